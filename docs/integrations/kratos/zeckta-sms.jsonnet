// The body Ory Kratos' HTTP courier posts to POST /v1/messaging/sms.
// Kratos binds ctx.to (E.164), ctx.body (the text it rendered, code included) and, since v1.1,
// ctx.template_type (which message it is).
local purposes = {
  login_code_valid: 'LOGIN',
  recovery_code_valid: 'ACCOUNT_RECOVERY',
};

function(ctx) {
  dest: ctx.to,
  src: 'ACME',  // an APPROVED sender name of your workspace
  text: ctx.body,
  // Optional: null (another kind of message, or an older Kratos) is the field left out.
  purpose: std.get(purposes, std.get(ctx, 'template_type', ''), null),
}
