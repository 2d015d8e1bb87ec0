/**
 * `horae purge --older-than <duration>`: deletes Done, Cancelled and Failed tasks last updated before now minus the
 * duration, with their attempt records (deleteTerminalBefore).
 */
import { createInterface } from 'node:readline';
import { TaskState, type Repository } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED, usageError } from '../exit-codes.js';
import { formatDuration, parseDuration } from '../duration.js';

/** The deletes are made in up to this many slices of time, oldest first: progress to show, and bounded transactions. */
const SLICES = 10;

/** `horae purge --older-than <duration> [--yes]`. */
export async function purge(ctx: CommandContext, options: { olderThan?: string; yes?: boolean }): Promise<void> {
  if (options.olderThan === undefined) throw usageError('purge needs --older-than <duration>, such as --older-than 30d');
  const ageMs = parseDuration(options.olderThan, '--older-than');
  const cutoff = new Date(Date.now() - ageMs);
  const target = ctx.target();
  const interactive = ctx.io.stdin?.isTTY === true && ctx.io.stderr.isTTY === true;
  if (interactive && options.yes !== true) {
    const answer = await ask(ctx, `Delete every Done, Cancelled and Failed task last updated before ${cutoff.toISOString()} (older than ${formatDuration(ageMs)}), with its attempts, from ${target.display}? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('purge cancelled: nothing was deleted', EXIT_FAILED, 'NOT_CONFIRMED');
  }
  const deleted = await ctx.withRepository((repository) => deleteInSlices(repository, cutoff, interactive ? (text) => ctx.io.stderr.write(`\r${text}`) : undefined));
  if (interactive) ctx.io.stderr.write('\n');
  if (ctx.out.json) ctx.out.document({ deleted, before: cutoff.toISOString() });
  else ctx.out.line(`deleted ${deleted} terminal task${deleted === 1 ? '' : 's'} last updated before ${cutoff.toISOString()}`);
}

async function deleteInSlices(repository: Repository, cutoff: Date, progress: ((text: string) => unknown) | undefined): Promise<number> {
  // A task's updatedAt is never before its createdAt, and list pages by createdAt: the oldest terminal task of each
  // state bounds from below what can be deleted.
  const firsts = await Promise.all([TaskState.Done, TaskState.Cancelled, TaskState.Failed].map((state) => repository.list({ state, limit: 1 })));
  const oldest = Math.min(...firsts.flatMap((page) => page.tasks.map((t) => t.createdAt.getTime())));
  let deleted = 0;
  if (!Number.isFinite(oldest) || oldest >= cutoff.getTime()) {
    deleted = await repository.deleteTerminalBefore(cutoff);
    progress?.(`purge: ${deleted} deleted`);
    return deleted;
  }
  const span = cutoff.getTime() - oldest;
  for (let i = 1; i <= SLICES; i++) {
    const before = i === SLICES ? cutoff : new Date(oldest + Math.ceil((span * i) / SLICES));
    deleted += await repository.deleteTerminalBefore(before);
    progress?.(`purge: ${Math.round((i / SLICES) * 100)}% of the time range, ${deleted} deleted`);
  }
  return deleted;
}

function ask(ctx: CommandContext, question: string): Promise<string> {
  const input = ctx.io.stdin;
  if (input === undefined) return Promise.resolve('');
  return new Promise((resolve) => {
    const rl = createInterface({ input, output: ctx.io.stderr as NodeJS.WritableStream, terminal: false });
    ctx.io.stderr.write(question);
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(line);
    });
    rl.once('close', () => {
      if (!answered) resolve('');
    });
  });
}
