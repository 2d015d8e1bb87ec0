/**
 * Extracts the runnable code blocks of a Markdown guide, so that a test can typecheck and run them: the examples a
 * reader copies cannot go stale without the test failing.
 *
 * Rules:
 * - A fenced block whose language is `ts`, `typescript`, `js` or `javascript` is a program to run. Other fences
 *   (`sh`, `json`, none) are text.
 * - `<!-- not run: REASON -->` on the line before the fence (blank lines between are allowed) opts the block out;
 *   the test reports it as skipped with REASON.
 * - `<!-- continues -->` there appends the block to the program of the block before it: the two (or more) run as
 *   one program, for a guide that builds a program over several sections. Only the whole chain runs.
 */

/** One program: one block, or a chain of blocks joined by `<!-- continues -->`. */
export interface DocProgram {
  /** The document, as given (for messages). */
  readonly doc: string;
  /** The 1-based line of the opening fence of each block of the program, in order. */
  readonly lines: readonly number[];
  /** The code, the blocks one after another, each preceded by a comment naming its place in the document. */
  readonly code: string;
  /** Why it is not run, when a `not run` marker says so. */
  readonly skipReason: string | undefined;
}

const RUNNABLE = new Set(['ts', 'typescript', 'js', 'javascript', 'mts', 'mjs']);
const NOT_RUN = /^<!--\s*not run:\s*(.+?)\s*-->$/;
const CONTINUES = /^<!--\s*continues\s*-->$/;

/**
 * @param doc - the document's name, for messages (e.g. `README.md`)
 * @param markdown - its text
 * @returns its programs, in the order of the document
 * @throws Error when a fence is not closed, or `continues` has no runnable block before it, or continues an opted-out one
 */
export function extractPrograms(doc: string, markdown: string): DocProgram[] {
  const lines = markdown.split('\n');
  const programs: Array<{ lines: number[]; chunks: string[]; skipReason: string | undefined }> = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i] ?? '');
    if (open === null) continue;
    const [, indent = '', fence = '```', lang = ''] = open;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !(lines[i] ?? '').trimStart().startsWith(fence); i++) body.push((lines[i] ?? '').slice(indent.length));
    if (i >= lines.length) throw new Error(`${doc}:${start + 1}: the code fence is not closed`);
    if (!RUNNABLE.has(lang.toLowerCase())) continue;

    const marker = markerBefore(lines, start);
    const chunk = `// ${doc}:${start + 1}\n${body.join('\n')}\n`;
    const notRun = marker === undefined ? null : NOT_RUN.exec(marker);
    if (marker !== undefined && CONTINUES.test(marker)) {
      const previous = programs.at(-1);
      if (previous === undefined) throw new Error(`${doc}:${start + 1}: <!-- continues --> but no runnable block comes before it`);
      if (previous.skipReason !== undefined) throw new Error(`${doc}:${start + 1}: <!-- continues --> continues a block that is not run`);
      previous.lines.push(start + 1);
      previous.chunks.push(chunk);
      continue;
    }
    programs.push({ lines: [start + 1], chunks: [chunk], skipReason: notRun?.[1] });
  }
  return programs.map((p) => ({ doc, lines: p.lines, code: p.chunks.join('\n'), skipReason: p.skipReason }));
}

/** The nearest non-blank line before line `index`, when it is an HTML comment. */
function markerBefore(lines: readonly string[], index: number): string | undefined {
  for (let j = index - 1; j >= 0; j--) {
    const line = (lines[j] ?? '').trim();
    if (line === '') continue;
    return line.startsWith('<!--') ? line : undefined;
  }
  return undefined;
}
