// Judge IAM requests with a real policy evaluator (@cloud-copilot/iam-simulate, from package-lock.json).
// stdin: [{"policies": [<identity policy>...], "action": "s3:GetObject", "resource": "arn:...", "account": "...",
//          "resourcePolicy": <optional: e.g. the KMS key policy, which KMS always consults>}]
// stdout: one decision per request: "Allowed", "ImplicitlyDenied", "ExplicitlyDenied", or "error: ..."
const { runSimulation } = require("@cloud-copilot/iam-simulate");

async function decide(request) {
  const simulation = {
    identityPolicies: request.policies.map((policy, i) => ({ name: `policy-${i}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy,
    request: {
      action: request.action,
      principal: `arn:aws:iam::${request.account}:role/under-test`,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context || {},
    },
  };
  const response = await runSimulation(simulation, {});
  if (response.resultType === "error") return `error: ${JSON.stringify(response.errors)}`;
  return response.overallResult;
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const decisions = [];
  for (const request of JSON.parse(input)) decisions.push(await decide(request));
  process.stdout.write(JSON.stringify(decisions));
});
