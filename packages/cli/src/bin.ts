#!/usr/bin/env node
/**
 * The `horae` executable. No top-level await: the exit code is set when the run settles, and the process ends when
 * nothing is left open.
 */
import { runCli } from './cli.js';
import { processIo } from './io.js';

// A closed pipe (`horae tasks ls | head`) is not an error of the command: stop writing, keep the exit code.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

runCli(process.argv.slice(2), processIo()).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`horae: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
