/**
 * `horae migrate [--dry-run]`: brings the schema to the adapter's version (each adapter migrates when it opens), or
 * reports what that would do without writing.
 */
import type { CommandContext } from '../context.js';
import { probeDatabase } from '../connect.js';
import { CliError, EXIT_FAILED } from '../exit-codes.js';

/** `horae migrate [--dry-run]`: exit 1 when the database holds a newer schema than this version understands. */
export async function migrate(ctx: CommandContext, options: { dryRun?: boolean }): Promise<void> {
  const target = ctx.target();
  const before = await probeDatabase(target);
  const { out } = ctx;
  const newer = before.storedVersion > before.supportedVersion;
  if (options.dryRun === true || newer) {
    const pending = newer ? [] : range(before.storedVersion + 1, before.supportedVersion);
    if (out.json) out.document({ adapter: target.adapter, dryRun: options.dryRun === true, storedVersion: before.storedVersion, supportedVersion: before.supportedVersion, pending });
    if (newer) {
      throw new CliError(`${target.display} holds schema version ${before.storedVersion}, newer than the ${before.supportedVersion} this horae understands: upgrade horae`, EXIT_FAILED, 'SCHEMA_VERSION');
    }
    if (!out.json) {
      out.fields([
        ['adapter', target.adapter],
        ['stored schema', before.storedVersion === 0 ? '0 (no Horae schema yet)' : String(before.storedVersion)],
        ['adapter schema', String(before.supportedVersion)],
      ]);
      out.line(pending.length === 0 ? 'up to date: nothing to migrate' : `would apply migration${pending.length === 1 ? '' : 's'} ${pending.join(', ')} (nothing was written)`);
    }
    return;
  }
  await ctx.withRepository(() => Promise.resolve(), { create: true });
  const after = await probeDatabase(target);
  if (out.json) {
    out.document({ adapter: target.adapter, dryRun: false, from: before.storedVersion, to: after.storedVersion, supportedVersion: after.supportedVersion });
    return;
  }
  out.line(before.storedVersion === after.storedVersion ? `up to date at schema version ${after.storedVersion}` : `migrated ${target.display} from schema version ${before.storedVersion} to ${after.storedVersion}`);
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let v = from; v <= to; v++) out.push(v);
  return out;
}
