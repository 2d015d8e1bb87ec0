/**
 * `horae/testing`: what tests of an application need, reachable with only `horae` installed (a strict installer,
 * such as pnpm, does not let an application import `@horae/core` when it did not install it itself). The virtual
 * clock and its helpers of `@horae/core/testing`.
 *
 * @packageDocumentation
 */
export * from '@horae/core/testing';
