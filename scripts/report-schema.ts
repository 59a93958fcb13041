// Writes the JSON Schemas shipped in docs/: the cycle report's (docs/report.schema.json) and the
// doctor report's (docs/doctor.schema.json), from their zod schemas in functions/core/. Run by
// `npm run schema`; test/unit/report-schema.test.ts and doctor-schema.test.ts fail while a
// shipped file differs from what this writes.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { doctorJsonSchemaText } from '../functions/core/doctor-schema.js';
import { reportJsonSchemaText } from '../functions/core/report-schema.js';

for (const [name, text] of [
  ['report.schema.json', reportJsonSchemaText()],
  ['doctor.schema.json', doctorJsonSchemaText()],
] as const) {
  const file = fileURLToPath(new URL(`../docs/${name}`, import.meta.url));
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
