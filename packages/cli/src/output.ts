/**
 * How results look: aligned tables and coloured states for people, one JSON document for scripts.
 */
import type { CliIo } from './io.js';

/** Writes the results of one command. */
export class Output {
  readonly json: boolean;
  readonly color: boolean;
  readonly #io: CliIo;
  #printed = false;

  /**
   * @param io - the streams
   * @param json - `--json`: the result is one JSON document on stdout
   */
  constructor(io: CliIo, json: boolean) {
    this.#io = io;
    this.json = json;
    const env = io.env ?? process.env;
    this.color = !json && io.stdout.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '');
  }

  /** Prints a line on stdout. */
  line(text = ''): void {
    this.#io.stdout.write(`${text}\n`);
  }

  /** Prints a line on stderr (a note, a warning, progress). */
  note(text: string): void {
    this.#io.stderr.write(`${text}\n`);
  }

  /** True once the command printed its JSON document. */
  get printed(): boolean {
    return this.#printed;
  }

  /** Prints the one JSON document of a `--json` run. */
  document(value: unknown): void {
    this.#printed = true;
    this.#io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Prints rows as a table with aligned columns; an empty list prints `empty` instead. */
  table(headers: readonly string[], rows: readonly (readonly string[])[], empty = '(none)'): void {
    if (rows.length === 0) {
      this.line(this.dim(empty));
      return;
    }
    const widths = headers.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ''))));
    const render = (cells: readonly string[]): string =>
      cells
        .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat(widths[i]! - visibleLength(cell))))
        .join('  ')
        .trimEnd();
    this.line(this.bold(render(headers)));
    for (const row of rows) this.line(render(row));
  }

  /** Prints `label  value` pairs, labels aligned. */
  fields(pairs: readonly (readonly [string, string])[]): void {
    const width = Math.max(...pairs.map(([label]) => label.length));
    for (const [label, value] of pairs) this.line(`${this.dim(label.padEnd(width))}  ${value}`);
  }

  /** A state, coloured by what it means. */
  state(state: string): string {
    const code = { Initialized: 36, Working: 33, Done: 32, Cancelled: 90, Failed: 31 }[state];
    return code === undefined ? state : this.#paint(code, state);
  }

  /** Red text (errors, problems). */
  red(text: string): string {
    return this.#paint(31, text);
  }

  /** Green text (all good). */
  green(text: string): string {
    return this.#paint(32, text);
  }

  /** Yellow text (warnings). */
  yellow(text: string): string {
    return this.#paint(33, text);
  }

  /** Dim text (labels, empty values). */
  dim(text: string): string {
    return this.#paint(2, text);
  }

  /** Bold text (headers). */
  bold(text: string): string {
    return this.#paint(1, text);
  }

  #paint(code: number, text: string): string {
    return this.color ? `\u001b[${code}m${text}\u001b[0m` : text;
  }
}

const ANSI = /\u001b\[\d+m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}

/** A date as ISO 8601 (UTC), or `-`. */
export function formatDate(date: Date | null | undefined): string {
  return date === null || date === undefined ? '-' : date.toISOString();
}

/** Cuts a text to one line of at most `max` characters. */
export function oneLine(text: string, max = 80): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
