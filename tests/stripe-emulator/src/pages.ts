// The emulator's "hosted" pages: Checkout (GET pays the session and redirects to success_url,
// as a customer finishing Stripe's page would; ?card=pm_card_chargeCustomerFail pays with a
// failing card; /cancel redirects to cancel_url; /page shows a form that does the same), the
// billing portal and hosted invoices.
import type http from 'node:http';

import { StripeError } from './errors';
import { complete } from './objects/checkout';
import type { Emulator } from './router';

function html(res: http.ServerResponse, status: number, title: string, body: string): true {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><main><h1>${title}</h1>${body}</main></body></html>`);
  return true;
}

export function pages(emu: Emulator) {
  return (req: http.IncomingMessage, url: URL, res: http.ServerResponse): boolean => {
    let m: RegExpExecArray | null;
    if ((m = /^\/checkout\/([^/]+)\/page$/.exec(url.pathname))) {
      // A page to look at (and screenshot): what is bought, a card to choose, Pay and Cancel.
      const s = emu.store.checkoutSessions.get(m[1]);
      if (!s) return html(res, 404, 'No such checkout session', '');
      const amount = s.amount_total === null ? '' : `${(s.amount_total / 100).toFixed(2)} ${(s.currency ?? '').toUpperCase()}`;
      return html(res, 200, 'Checkout (Stripe emulator)', `
<p>${s.mode === 'setup' ? 'Save a card for later payments' : `Subscribe: <strong>${amount}</strong>`}</p>
<form method="get" action="/checkout/${s.id}">
  <label for="card">Card</label>
  <select id="card" name="card">
    <option value="pm_card_visa">Visa 4242</option>
    <option value="pm_card_mastercard">Mastercard 4444</option>
    <option value="pm_card_chargeCustomerFail">Visa 0341 (charges fail)</option>
  </select>
  <button type="submit">${s.mode === 'setup' ? 'Save card' : 'Pay'}</button>
</form>
<p><a href="/checkout/${s.id}/cancel">Cancel</a></p>`);
    }
    if ((m = /^\/checkout\/([^/]+)(\/cancel)?$/.exec(url.pathname))) {
      const s = emu.store.checkoutSessions.get(m[1]);
      if (!s) return html(res, 404, 'No such checkout session', '');
      if (m[2]) {
        res.writeHead(303, { Location: s.cancel_url ?? '/' });
        res.end();
        return true;
      }
      try {
        complete(emu, s.id, url.searchParams.get('card') ?? undefined);
      } catch (e) {
        if (e instanceof StripeError) return html(res, 402, 'Payment failed', `<p>${e.message}</p>`);
        throw e;
      }
      const to = (s.success_url ?? '/').replace('{CHECKOUT_SESSION_ID}', s.id);
      res.writeHead(303, { Location: to });
      res.end();
      return true;
    }
    if ((m = /^\/portal\/([^/]+)$/.exec(url.pathname))) {
      const s = emu.store.portalSessions.get(m[1]);
      if (!s) return html(res, 404, 'No such portal session', '');
      const back = s.return_url ? `<p><a href="${s.return_url}">Return</a></p>` : '';
      return html(res, 200, 'Billing portal (Stripe emulator)', `<p>Customer ${s.customer}</p>${back}`);
    }
    if ((m = /^\/invoices\/([^/]+)$/.exec(url.pathname))) {
      const inv = emu.store.invoices.get(m[1]);
      if (!inv) return html(res, 404, 'No such invoice', '');
      return html(res, 200, `Invoice ${inv.number ?? inv.id}`, `<p>Status: ${inv.status}; amount due ${inv.amount_due} ${inv.currency}</p>`);
    }
    return false;
  };
}
