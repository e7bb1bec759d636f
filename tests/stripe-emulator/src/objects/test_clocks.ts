// test_helpers.test_clocks: create, retrieve, list, delete, advance. Advancing runs every
// renewal, trial end and payment retry due on the way (clock.ts) and is done when it answers
// (status "ready"; Stripe's is asynchronous, the emulator's is not).
import type Stripe from 'stripe';

import { allowOnly, int, str } from '../encoding';
import { StripeError } from '../errors';
import { advanceTo } from '../clock';
import type { Ctx, Route } from '../router';
import { newestFirst, paginate } from '../store';

function clock(ctx: Ctx): Stripe.TestHelpers.TestClock {
  const c = ctx.emu.store.testClocks.get(ctx.path[0]);
  if (!c) throw StripeError.missing('test_clock', ctx.path[0], 'test_clock');
  return c;
}

export const routes: Route[] = [
  {
    method: 'POST',
    path: '/v1/test_helpers/test_clocks',
    handler: (ctx) => {
      allowOnly(ctx.params, ['frozen_time', 'name']);
      const frozen = int(ctx.params, 'frozen_time');
      if (frozen === undefined) throw StripeError.invalid('Missing required param: frozen_time.', 'frozen_time', 'parameter_missing');
      const c: Stripe.TestHelpers.TestClock = {
        id: ctx.emu.store.id('clock'),
        object: 'test_helpers.test_clock',
        created: ctx.emu.store.now(),
        deletes_after: ctx.emu.store.now() + 30 * 86400,
        frozen_time: frozen,
        livemode: false,
        name: str(ctx.params, 'name') ?? null,
        status: 'ready',
        status_details: {},
      };
      ctx.emu.store.testClocks.set(c.id, c);
      ctx.emu.webhooks.emit('test_helpers.test_clock.created', c);
      return c;
    },
  },
  { method: 'GET', path: '/v1/test_helpers/test_clocks/:id', handler: clock },
  {
    method: 'GET',
    path: '/v1/test_helpers/test_clocks',
    handler: (ctx) => paginate(newestFirst(ctx.emu.store.testClocks), ctx.params, '/v1/test_helpers/test_clocks'),
  },
  {
    method: 'DELETE',
    path: '/v1/test_helpers/test_clocks/:id',
    handler: (ctx): Stripe.TestHelpers.DeletedTestClock => {
      const c = clock(ctx);
      ctx.emu.store.testClocks.delete(c.id);
      return { id: c.id, object: 'test_helpers.test_clock', deleted: true };
    },
  },
  {
    method: 'POST',
    path: '/v1/test_helpers/test_clocks/:id/advance',
    handler: (ctx) => {
      const c = clock(ctx);
      allowOnly(ctx.params, ['frozen_time']);
      const target = int(ctx.params, 'frozen_time');
      if (target === undefined) throw StripeError.invalid('Missing required param: frozen_time.', 'frozen_time', 'parameter_missing');
      if (target <= c.frozen_time) {
        throw StripeError.invalid('The frozen_time must be after the current frozen_time of the test clock.', 'frozen_time');
      }
      advanceTo(ctx.emu, c.id, target);
      c.status = 'ready';
      ctx.emu.webhooks.emit('test_helpers.test_clock.ready', c);
      return c;
    },
  },
];
