// Prints vitest's totals as one plain line ("N passed, N failed, N skipped") from its JSON report, so that
// CI reads the same figures whatever reporter it understands. Exits non-zero when the report is missing.
import { readFileSync } from 'node:fs';

const path = process.argv[2] ?? 'node_modules/.cache/vitest-report.json';
const report = JSON.parse(readFileSync(path, 'utf8'));
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
process.exit(report.numFailedTests === 0 && report.numPassedTests > 0 ? 0 : 1);
