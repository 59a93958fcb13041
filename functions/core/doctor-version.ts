/**
 * `schemaVersion` of the doctor's report and the kinds of check, in the order the human view lists
 * them (the schema is doctor-schema.ts). A module of its own so that the doctor and the Lambda
 * bundle do not load classic zod to build a schema only the tests and `npm run schema` need.
 */
export const DOCTOR_SCHEMA_VERSION = 1;

/** What a check looks at. */
export const CHECK_KINDS = [
  // Graphite, once.
  'graphite-reachable',
  'graphite-authenticated',
  // Each backend's target against the servers the load balancers have.
  'target-coverage',
  // Each load balancer.
  'load-balancer-reachable',
  'admin-level',
  // Each backend on each load balancer.
  'backend-present',
  'backend-algorithm',
  'servers',
  // AWS: the Command document, and each targeted instance.
  'ssm-document',
  'instances-found',
  'instance-online',
  'instance-tag',
  'ssm-agent-version',
] as const;
