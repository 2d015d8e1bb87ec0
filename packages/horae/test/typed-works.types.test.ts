/**
 * Type-level tests: the param type of a work comes from its schema (Zod, Valibot, ArkType, a function), `ctx.param`
 * is typed, and `schedule()` accepts only the works' ids, each with its param type. Checked by the typecheck of the
 * tests (`tsc -p tsconfig.tests.json`): a wrong inference fails `npm test` there; the runtime part only builds the
 * objects.
 */
import { type } from 'arktype';
import * as v from 'valibot';
import { z } from 'zod';
import { describe, expectTypeOf, it } from 'vitest';
import { createHorae, defineWork, MemoryRepository, WorkRegistry, type Horae, type TaskHandle, type Schedule } from 'horae';

const email = defineWork('send-email', {
  schema: z.object({ to: z.email(), subject: z.string().default('hello') }),
  run: (ctx) => {
    expectTypeOf(ctx.param).toEqualTypeOf<{ to: string; subject: string }>();
    expectTypeOf(ctx.attempt).toEqualTypeOf<number>();
  },
});
const resize = defineWork('resize', {
  schema: v.object({ url: v.string(), width: v.number() }),
  run: (ctx) => expectTypeOf(ctx.param).toEqualTypeOf<{ url: string; width: number }>(),
});
const report = defineWork('report', {
  schema: type({ day: 'string', 'tags?': 'string[]' }),
  run: (ctx) => expectTypeOf(ctx.param).toEqualTypeOf<{ day: string; tags?: string[] }>(),
});
const legacy = defineWork('legacy', {
  schema: (p: unknown): { n: number } => p as { n: number },
  run: (ctx) => expectTypeOf(ctx.param).toEqualTypeOf<{ n: number }>(),
});
const untyped = defineWork('untyped', { run: (ctx) => expectTypeOf(ctx.param).toBeUnknown() });

describe('typed works (types)', () => {
  it('infers ids and param types from the schemas', () => {
    expectTypeOf(email.id).toEqualTypeOf<'send-email'>();
    // What schedule() accepts is the schema's input: Zod's default makes subject optional there.
    expectTypeOf<NonNullable<(typeof email)['~input']>>().toEqualTypeOf<{ to: string; subject?: string | undefined }>();
    expectTypeOf<NonNullable<(typeof resize)['~input']>>().toEqualTypeOf<{ url: string; width: number }>();
  });

  it('schedule() takes only the given works, each with its param type', () => {
    const horae = createHorae({ repository: new MemoryRepository(), works: [email, resize, report, legacy, untyped] });
    const schedule = (): void => {
      expectTypeOf(horae.schedule({ workId: 'send-email', param: { to: 'ada@example.com' } })).toEqualTypeOf<Promise<TaskHandle>>();
      expectTypeOf(horae.schedule({ workId: 'resize', param: { url: 'u', width: 3 }, delayMs: 5 })).toEqualTypeOf<Promise<TaskHandle>>();
      expectTypeOf(horae.schedule({ name: 'daily', workId: 'report', param: { day: 'mon' }, cron: '0 9 * * *' })).toEqualTypeOf<Promise<Schedule>>();
      void horae.schedule({ workId: 'untyped' });
      void horae.schedule({ workId: 'legacy', param: { n: 1 } });
      // @ts-expect-error: no work has this id
      void horae.schedule({ workId: 'sned-email', param: { to: 'x' } });
      // @ts-expect-error: width must be a number
      void horae.schedule({ workId: 'resize', param: { url: 'u', width: '3' } });
      // @ts-expect-error: the param of send-email is required
      void horae.schedule({ workId: 'send-email' });
      // @ts-expect-error: a recurring schedule's param is typed too
      void horae.schedule({ name: 'daily', workId: 'report', param: { day: 1 }, every: 60_000 });
    };
    expectTypeOf(schedule).toBeFunction();
  });

  it('without works, createHorae gives the plain Horae (schedule by any registered id)', () => {
    const horae = createHorae({ repository: new MemoryRepository(), registry: new WorkRegistry() });
    expectTypeOf(horae).toEqualTypeOf<Horae>();
  });

  it('WorkRegistry.register infers ctx.param from a Standard Schema too', () => {
    new WorkRegistry().register('r', (ctx) => expectTypeOf(ctx.param).toEqualTypeOf<{ id: number }>(), { validate: z.object({ id: z.number() }) });
  });
});
