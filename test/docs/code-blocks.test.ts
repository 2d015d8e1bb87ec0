/**
 * The code blocks of README.md and docs/getting-started.md are programs, and this test runs them as a reader would:
 * each one is typechecked with the project's TypeScript against the BUILT packages (`horae` resolves through the
 * repository's node_modules, as it would in an application), compiled to .mjs and run with Node on a SQLite file of
 * its own (`HORAE_DB`), and must exit 0 by itself. A block with a type error, or one that throws, fails its test.
 *
 * A block opts out with `<!-- not run: REASON -->` on the line before it (reported as skipped with the reason), and
 * `<!-- continues -->` joins a block to the one before it (see doc-blocks.ts). The first example of each document
 * may not opt out.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPackagesForChildren } from '../support/built-packages.js';
import { extractPrograms, type DocProgram } from './doc-blocks.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCS = ['README.md', 'docs/getting-started.md'] as const;
/** How long one program may run. */
const RUN_TIMEOUT_MS = 30_000;

/**
 * Inside the repository's node_modules, so that `horae`, `zod` and `@types/node` resolve from there as from an
 * application's own folder; one folder per test run, so that parallel runs do not meet.
 */
const workDir = join(root, 'node_modules', '.cache', 'doc-blocks', `${process.pid}-${Date.now()}`);

interface Prepared {
  readonly program: DocProgram;
  readonly dir: string;
  readonly source: string;
  readonly output: string;
}

const prepared = new Map<DocProgram, Prepared>();
const diagnostics = new Map<string, string>();

const byDoc = DOCS.map((doc) => ({ doc, programs: extractPrograms(doc, readFileSync(join(root, doc), 'utf8')) }));

/** A program's name in the report: where its blocks start in the document. */
function nameOf(program: DocProgram): string {
  return `${program.doc}:${program.lines.join('+')}`;
}

beforeAll(() => {
  buildPackagesForChildren(['horae']);
  let n = 0;
  for (const { programs } of byDoc) {
    for (const program of programs) {
      if (program.skipReason !== undefined) continue;
      const slug = `${program.doc.replace(/[^\w]+/g, '-')}-${program.lines[0]}`;
      const dir = join(workDir, `${String(n++).padStart(2, '0')}-${slug}`);
      mkdirSync(dir, { recursive: true });
      const source = join(dir, 'main.mts');
      writeFileSync(source, program.code);
      prepared.set(program, { program, dir, source, output: join(dir, 'main.mjs') });
    }
  }
  // One TypeScript program for every block: a block is a module of its own, so they do not see each other's names.
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
    rootDir: workDir,
    outDir: workDir,
    noEmitOnError: false,
  };
  const sources = [...prepared.values()].map((p) => p.source);
  const tsProgram = ts.createProgram(sources, options);
  const host: ts.FormatDiagnosticsHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => workDir, getNewLine: () => '\n' };
  for (const source of sources) {
    const found = ts.getPreEmitDiagnostics(tsProgram, tsProgram.getSourceFile(source));
    if (found.length > 0) diagnostics.set(source, ts.formatDiagnostics(found, host));
  }
  const emitted = tsProgram.emit();
  if (emitted.emitSkipped) throw new Error(`tsc emitted nothing: ${ts.formatDiagnostics(emitted.diagnostics, host)}`);
}, 120_000);

afterAll(() => {
  if (process.env.KEEP_DOC_BLOCKS === undefined) rmSync(workDir, { recursive: true, force: true });
});

/** Runs a compiled block with Node in its own folder, its embedded database there too. */
function run(p: Prepared): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [p.output],
      { cwd: p.dir, env: { ...process.env, HORAE_DB: join(p.dir, 'horae.db') }, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: unknown; signal?: string | null }) | null;
        resolve({ code: failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null, signal: failure?.signal ?? null, stdout, stderr });
      },
    );
  });
}

for (const { doc, programs } of byDoc) {
  describe(`the code blocks of ${doc}`, () => {
    it('has a first example, and it is run', () => {
      expect(programs.length).toBeGreaterThan(0);
      expect(programs[0]?.skipReason).toBeUndefined();
    });

    for (const program of programs) {
      if (program.skipReason !== undefined) {
        it.skip(`${nameOf(program)}: not run: ${program.skipReason}`, () => undefined);
        continue;
      }
      it(`${nameOf(program)} typechecks and runs to exit code 0`, async () => {
        const p = prepared.get(program);
        if (p === undefined) throw new Error('not prepared');
        const typeErrors = diagnostics.get(p.source);
        expect(typeErrors, `type errors in ${nameOf(program)} (${p.source}):\n${typeErrors}`).toBeUndefined();
        const result = await run(p);
        const outcome = result.signal !== null ? `killed by ${result.signal} (timeout ${RUN_TIMEOUT_MS} ms?)` : `exit code ${result.code}`;
        expect(result.code, `${nameOf(program)} (${p.output}): ${outcome}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`).toBe(0);
      }, RUN_TIMEOUT_MS + 10_000);
    }
  });
}

describe('extractPrograms', () => {
  it('reads ts/js fences, skips other languages, honours `not run` and `continues`', () => {
    const md = [
      '```sh', 'npm install horae', '```',
      '```ts', 'const a = 1;', '```',
      '<!-- continues -->', '', '```ts', 'console.log(a);', '```',
      '<!-- not run: needs PostgreSQL -->', '```js', 'throw new Error();', '```',
    ].join('\n');
    const programs = extractPrograms('x.md', md);
    expect(programs.map((p) => ({ lines: p.lines, skip: p.skipReason }))).toEqual([
      { lines: [4, 9], skip: undefined },
      { lines: [13], skip: 'needs PostgreSQL' },
    ]);
    expect(programs[0]?.code).toBe('// x.md:4\nconst a = 1;\n\n// x.md:9\nconsole.log(a);\n');
  });

  it('refuses a `continues` with nothing runnable before it, and an unclosed fence', () => {
    expect(() => extractPrograms('x.md', '<!-- continues -->\n```ts\nx\n```')).toThrow(/no runnable block/);
    expect(() => extractPrograms('x.md', '```ts\nx')).toThrow(/not closed/);
  });
});
