// Billing portal sessions: a URL on the emulator for the customer's payment methods and invoices.
import type Stripe from 'stripe';

import { allowOnly, reqStr, str } from '../encoding';
import type { Route } from '../router';

export const routes: Route[] = [
  {
    method: 'POST',
    path: '/v1/billing_portal/sessions',
    handler: (ctx): Stripe.BillingPortal.Session => {
      const { store } = ctx.emu;
      allowOnly(ctx.params, ['customer', 'return_url', 'configuration', 'flow_data', 'locale']);
      const customer = store.customer(reqStr(ctx.params, 'customer')).id;
      const id = store.id('bps');
      const s: Stripe.BillingPortal.Session = {
        id,
        object: 'billing_portal.session',
        configuration: 'bpc_emulator',
        created: store.nowFor(customer),
        customer,
        customer_account: null,
        flow: null,
        livemode: false,
        locale: null,
        on_behalf_of: null,
        return_url: str(ctx.params, 'return_url') ?? null,
        url: `${ctx.emu.baseUrl}/portal/${id}`,
      };
      store.portalSessions.set(id, s);
      return s;
    },
  },
];
