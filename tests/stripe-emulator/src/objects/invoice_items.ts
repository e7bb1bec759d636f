// Invoice items: a one-off charge (or credit, negative) added to a subscription's next invoice,
// as POST /v1/invoiceitems does. The emulator attaches items to a subscription (its renewal
// invoices pending items); an item without one is refused. Tests use them to make invoices of
// many lines (Stripe embeds only the first page of an invoice's lines, see lists in store.ts).
import type Stripe from 'stripe';

import { Params, allowOnly, applyMetadata, int, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import { newLine } from '../lines';
import type { Ctx, Route } from '../router';

function create(ctx: Ctx): Stripe.InvoiceItem {
  const { store } = ctx.emu;
  const p: Params = ctx.params;
  allowOnly(p, ['customer', 'subscription', 'amount', 'currency', 'description', 'quantity', 'metadata', 'expand']);
  const customer = store.customer(reqStr(p, 'customer')).id;
  const subId = str(p, 'subscription');
  if (!subId) {
    throw StripeError.invalid('The emulator adds invoice items to a subscription\'s next invoice: pass subscription.',
                              'subscription', 'parameter_missing');
  }
  const sub = store.subscription(subId);
  if (sub.customer !== customer) throw StripeError.invalid('The subscription belongs to another customer.', 'subscription');
  const amount = int(p, 'amount');
  if (amount === undefined) throw StripeError.invalid('Missing required param: amount.', 'amount', 'parameter_missing');
  const quantity = int(p, 'quantity') ?? 1;
  if (quantity < 1) throw StripeError.invalid('Invalid integer: quantity must be at least 1', 'quantity');
  const price = sub.items.data[0].price;
  const currency = (str(p, 'currency') ?? price.currency).toLowerCase();
  if (currency !== price.currency) {
    throw StripeError.invalid(`The emulator bills one currency per subscription (${price.currency}).`, 'currency');
  }
  const now = store.nowFor(customer);
  const description = str(p, 'description') ?? 'Invoice item';
  const line = newLine(store, {
    price, quantity, amount: amount * quantity, start: now, end: now, description, subscription: sub, proration: false,
  });
  line.type = 'invoiceitem';
  const id = store.id('ii');
  const details = line.parent?.subscription_item_details;
  if (details) details.invoice_item = id;
  const metadata: Stripe.Metadata = applyMetadata({}, p);
  store.pendingItems.push({ customer, subscription: sub.id, line });
  return {
    id,
    object: 'invoiceitem',
    amount: amount * quantity,
    currency,
    customer,
    customer_account: null,
    date: now,
    description,
    discountable: true,
    discounts: [],
    invoice: null,
    livemode: false,
    metadata,
    parent: { type: 'subscription_details', subscription_details: { subscription: sub.id } },
    period: { start: now, end: now },
    pricing: {
      type: 'price_details',
      price_details: { price: price.id, product: typeof price.product === 'string' ? price.product : price.product.id },
      unit_amount_decimal: null,
    },
    proration: false,
    quantity,
    // Stripe sends decimals as strings.
    quantity_decimal: String(quantity) as unknown as Stripe.Decimal,
    tax_rates: [],
    test_clock: store.clockOf(customer),
  };
}

export const routes: Route[] = [{ method: 'POST', path: '/v1/invoiceitems', handler: create }];
