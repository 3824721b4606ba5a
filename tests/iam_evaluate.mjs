// Judge a batch of AWS requests with AWS's IAM evaluation logic (@cloud-copilot/iam-simulate), in one process.
// stdin:  {"principal", "accountId", "identityPolicies": [{name, policy}], "permissionBoundaryPolicies": [...],
//          "requests": [{"action", "resource", "context": {...}, "resourcePolicy"?: {...}}]}
//         resourcePolicy: the resource's own policy where AWS requires it to allow too (a KMS key's key policy).
// stdout: [{"action", "resource", "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//           "errors"?: ...}], one per request, in order. Identical requests are simulated once.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const cache = new Map()
const results = []
for (const request of input.requests) {
  const key = JSON.stringify([request.action, request.resource, request.context, request.resourcePolicy ?? null])
  if (!cache.has(key)) {
    const response = await runSimulation(
      {
        request: {
          principal: input.principal,
          action: request.action,
          resource: { resource: request.resource, accountId: input.accountId },
          contextVariables: request.context ?? {},
        },
        identityPolicies: input.identityPolicies,
        resourcePolicy: request.resourcePolicy,
        permissionBoundaryPolicies: input.permissionBoundaryPolicies?.length ? input.permissionBoundaryPolicies : undefined,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
      },
      {},
    )
    cache.set(
      key,
      response.resultType === 'error'
        ? { result: 'Error', errors: response.errors }
        : { result: response.overallResult },
    )
  }
  results.push({ action: request.action, resource: request.resource, ...cache.get(key) })
}
process.stdout.write(JSON.stringify(results))
