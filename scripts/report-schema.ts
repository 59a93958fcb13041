// Writes docs/report.schema.json, the JSON Schema of the cycle report, from its zod schema in
// functions/core/report-schema.ts. Run by `npm run schema`; test/unit/report-schema.test.ts fails
// while the shipped file differs from what this writes.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { reportJsonSchemaText } from '../functions/core/report-schema.js';

const REPORT_SCHEMA_FILE = fileURLToPath(new URL('../docs/report.schema.json', import.meta.url));

writeFileSync(REPORT_SCHEMA_FILE, reportJsonSchemaText());
console.log(`wrote ${REPORT_SCHEMA_FILE}`);
