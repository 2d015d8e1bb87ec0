/**
 * `@horae/cli`: the `horae` command, and {@link runCli} to run it in a process of your own (tests, embedding).
 *
 * @packageDocumentation
 */
export { runCli } from './cli.js';
export { EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, CliError } from './exit-codes.js';
export { parseDatabaseUrl, maskSecrets, type DatabaseTarget } from './database-url.js';
export { parseDuration } from './duration.js';
export type { CliIo, CliWritable, CliReadable } from './io.js';
