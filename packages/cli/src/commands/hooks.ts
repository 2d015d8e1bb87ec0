/**
 * `horae hooks dead | redrive`: the dead letters of the status hook outbox.
 */
import { isHookOutboxProvider, type HookOutbox } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED } from '../exit-codes.js';
import { formatDate, oneLine } from '../output.js';
import { parseLimit } from './tasks.js';

async function withOutbox<T>(ctx: CommandContext, use: (outbox: HookOutbox) => Promise<T>): Promise<T> {
  return ctx.withRepository(async (repository) => {
    if (!isHookOutboxProvider(repository)) {
      throw new CliError(`this database (${ctx.target().adapter}) has no status hook outbox`, EXIT_FAILED, 'NO_HOOK_OUTBOX');
    }
    return use(repository.hookOutbox());
  });
}

/** `horae hooks dead [--hook H] [--limit N] [--after-seq S]`. */
export async function hooksDead(ctx: CommandContext, options: { hook?: string; limit?: string; afterSeq?: string }): Promise<void> {
  const limit = parseLimit(options.limit, 100);
  const afterSeq = options.afterSeq === undefined ? undefined : parseLimitless(options.afterSeq);
  const rows = await withOutbox(ctx, (outbox) =>
    outbox.listHookDeliveries({ state: 'dead', limit, ...(options.hook === undefined ? {} : { hook: options.hook }), ...(afterSeq === undefined ? {} : { afterSeq }) }),
  );
  const { out } = ctx;
  if (out.json) {
    out.document({ deliveries: rows, nextAfterSeq: rows.length === limit ? rows[rows.length - 1]!.seq : null });
    return;
  }
  out.table(
    ['ID', 'HOOK', 'TASK', 'ATTEMPTS', 'UPDATED', 'LAST ERROR'],
    rows.map((d) => [d.id, d.hook, d.taskId, String(d.attempts), formatDate(d.updatedAt), oneLine(d.lastError ?? '', 60)]),
    '(no dead letters)',
  );
  if (rows.length === limit) out.note(`more: horae hooks dead … --after-seq ${rows[rows.length - 1]!.seq}`);
}

function parseLimitless(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new CliError(`--after-seq must be an integer ≥ 0; got ${JSON.stringify(text)}`, 2, 'USAGE');
  return n;
}

/** `horae hooks redrive <deliveryId>`: exit 1 when no dead letter has the id. */
export async function hooksRedrive(ctx: CommandContext, id: string): Promise<void> {
  const redriven = await withOutbox(ctx, (outbox) => outbox.redriveHookDelivery(id));
  if (ctx.out.json) ctx.out.document({ redriven, id });
  if (!redriven) throw new CliError(`no dead delivery has the id ${JSON.stringify(id)} (nothing was sent again)`, EXIT_FAILED, 'DELIVERY_NOT_FOUND');
  if (!ctx.out.json) ctx.out.line(`delivery ${id} is pending again, due now: the next delivery loop of a running node sends it`);
}
