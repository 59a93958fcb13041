/**
 * `schemaVersion` of the cycle report (the schema is report-schema.ts). A module of its own so that
 * making a report does not load the zod schema that describes it: building that schema is a few
 * milliseconds of every start-up, and only the tests and `npm run schema` need it.
 */
export const REPORT_SCHEMA_VERSION = 2;
