// Judge a batch of AWS requests with AWS's IAM evaluation logic (@cloud-copilot/iam-simulate), in one process.
// stdin:  {"principal", "accountId", "identityPolicies": [{name, policy}], "permissionBoundaryPolicies": [...],
//          "requests": [{"action", "resource", "context": {...}, "resourcePolicy"?: {...}}]}
//         or a list of such objects (several principals, one process).
//         resourcePolicy: the resource's own policy where AWS requires it to allow too (a KMS key's key policy).
// stdout: [{"action", "resource", "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//           "ignoredContextKeys"?: [...], "errors"?: ...}], one per request, in order (a list of such lists for a
//         list input). Identical requests of one principal are simulated once. Strict mode: the request is
//         evaluated exactly as supplied; context keys that do not apply to the action and resource type are
//         dropped by the simulator and named in ignoredContextKeys (a condition on them never matches).
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))

function ignoredKeys(response) {
  const results = response.resultType === 'single' ? [response.result] : response.results ?? []
  return [...new Set(results.flatMap((r) => r.ignoredContextKeys ?? []))].sort()
}

async function judge(principalInput) {
  const cache = new Map()
  const results = []
  for (const request of principalInput.requests) {
    const key = JSON.stringify([request.action, request.resource, request.context, request.resourcePolicy ?? null])
    if (!cache.has(key)) {
      const boundaries = principalInput.permissionBoundaryPolicies
      const response = await runSimulation(
        {
          request: {
            principal: principalInput.principal,
            action: request.action,
            resource: { resource: request.resource, accountId: principalInput.accountId },
            contextVariables: request.context ?? {},
          },
          identityPolicies: principalInput.identityPolicies,
          resourcePolicy: request.resourcePolicy,
          permissionBoundaryPolicies: boundaries?.length ? boundaries : undefined,
          serviceControlPolicies: [],
          resourceControlPolicies: [],
        },
        { simulationMode: 'Strict' },
      )
      cache.set(
        key,
        response.resultType === 'error'
          ? { result: 'Error', errors: response.errors }
          : { result: response.overallResult, ignoredContextKeys: ignoredKeys(response) },
      )
    }
    results.push({ action: request.action, resource: request.resource, ...cache.get(key) })
  }
  return results
}

const output = Array.isArray(input) ? await Promise.all(input.map(judge)) : await judge(input)
process.stdout.write(JSON.stringify(output))
