// Stripe's error envelope: {"error": {type, code, message, param, ...}} with Stripe's statuses.
export type ErrorType =
  | 'api_error'
  | 'card_error'
  | 'idempotency_error'
  | 'invalid_request_error'
  | 'rate_limit_error';

export class StripeError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly code?: string,
    readonly param?: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }

  static invalid(message: string, param?: string, code?: string): StripeError {
    return new StripeError(400, 'invalid_request_error', message, code, param);
  }
  static missing(kind: string, id: string, param = 'id'): StripeError {
    return new StripeError(404, 'invalid_request_error', `No such ${kind}: '${id}'`,
                           'resource_missing', param);
  }
  static card(message: string, declineCode: string, extra: Record<string, unknown> = {}) {
    return new StripeError(402, 'card_error', message, 'card_declined', undefined, {
      decline_code: declineCode,
      ...extra,
    });
  }

  envelope(requestLogUrl?: string): { error: Record<string, unknown> } {
    const error: Record<string, unknown> = { type: this.type, message: this.message };
    if (this.code) error.code = this.code;
    if (this.param) error.param = this.param;
    if (this.code) error.doc_url = `https://stripe.com/docs/error-codes/${this.code.replace(/_/g, '-')}`;
    if (requestLogUrl) error.request_log_url = requestLogUrl;
    return { error: { ...error, ...this.extra } };
  }
}
