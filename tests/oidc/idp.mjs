// A real OpenID Connect provider (oidc-provider, certified) for Caregate's tests.
//
//   node tests/oidc/idp.mjs --port PORT --config CONFIG.json [--key-file FILE]
//
// CONFIG.json: {"clients": [...], "accounts": {"<login>": {sub, email, groups, amr, acr, ...}}}.
// It is a test double of a possibly malicious or broken provider: /__test/* endpoints change
// what the token endpoint returns (see TAMPER below), and everything is held in memory.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 64 * 1024;
const TITLE = 'Test identity provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    config: { type: 'string' },
    'key-file': { type: 'string' },
  },
});
if (!args.port || !args.config) {
  console.error('usage: node idp.mjs --port PORT --config CONFIG.json [--key-file FILE]');
  process.exit(2);
}
const port = Number(args.port);
const issuer = `http://${HOST}:${port}`;
const config = JSON.parse(readFileSync(args.config, 'utf8'));
const keyFile = args['key-file'] ?? join(dirname(args.config), 'idp-signing-key.json');

// Mutable test state: the accounts (by login) and the ID token tamper mode.
const accounts = { ...config.accounts };
let idTokenMode = 'normal';

// The signing key is ours (not oidc-provider's generated default) so that the tamper modes can
// re-sign with it, and it is kept on disk so a restarted provider's tokens still verify.
async function loadOrCreateKeys() {
  if (existsSync(keyFile)) {
    return JSON.parse(readFileSync(keyFile, 'utf8'));
  }
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  const keys = { signing: jwk, cookie: randomBytes(32).toString('hex') };
  writeFileSync(keyFile, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

const keys = await loadOrCreateKeys();
const signingKey = await jose.importJWK(keys.signing, 'RS256');

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${TITLE}</title></head>
<body>
<h1>${TITLE}</h1>
${body}
</body>
</html>`;
}

function loginForm(uid, { login = '', error = '' } = {}) {
  const message = error ? `<p role="alert">${escapeHtml(error)}</p>` : '';
  return page(`${message}
<form method="post" action="/interaction/${escapeHtml(uid)}">
  <p><label for="login">Username</label>
  <input id="login" type="text" name="login" value="${escapeHtml(login)}" autofocus></p>
  <p><label for="password">Password</label>
  <input id="password" type="password" name="password"></p>
  <p><button type="submit">Sign in</button></p>
</form>`);
}

// The account's `sub` is the oidc-provider accountId (it becomes the ID token's sub); the
// login is only what the user types.
function accountByLogin(login) {
  return Object.hasOwn(accounts, login) ? accounts[login] : undefined;
}

function subjectOf(login, account) {
  return account.sub ?? login;
}

function accountBySubject(sub) {
  return Object.entries(accounts).find(([login, account]) => subjectOf(login, account) === sub);
}

async function findAccount(_ctx, sub) {
  const found = accountBySubject(sub);
  if (!found) {
    return undefined;
  }
  return {
    accountId: sub,
    // Read the account again on each use so that /__test/accounts changes reach the next token.
    async claims() {
      const current = accountBySubject(sub);
      const { amr: _amr, acr: _acr, ...claims } = current ? current[1] : {};
      return { ...claims, sub };
    },
  };
}

const acrValues = [...new Set(Object.values(accounts).map((a) => a.acr).filter(Boolean))];

function clientMetadata(client) {
  return {
    token_endpoint_auth_method: 'client_secret_basic',
    response_types: ['code'],
    grant_types: ['authorization_code'],
    post_logout_redirect_uris: [],
    ...client,
  };
}

const provider = new Provider(issuer, {
  clients: config.clients.map(clientMetadata),
  jwks: { keys: [keys.signing] },
  findAccount,
  acrValues,
  // amr, acr and groups are listed under openid so every ID token carries them, whatever
  // scopes the relying party asks for; email and profile claims follow their scopes.
  claims: {
    openid: ['sub', 'acr', 'amr', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Put the scope claims in the ID token itself, so the relying party need not call userinfo.
  conformIdTokenClaims: false,
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  responseTypes: ['code'],
  pkce: { required: () => true },
  cookies: {
    keys: [keys.cookie],
    // Cookies are shared between ports of one host: name them by port so two providers (or
    // Caregate itself) in one browser never overwrite each other's.
    names: {
      session: `idp${port}_session`,
      interaction: `idp${port}_interaction`,
      resume: `idp${port}_interaction_resume`,
    },
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.type = 'html';
        ctx.body = page(`<p>Sign out of the test identity provider?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('<p>You are signed out.</p>');
      },
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async renderError(ctx, out) {
    ctx.type = 'html';
    const lines = Object.entries(out).map(([k, v]) => `<p>${escapeHtml(k)}: ${escapeHtml(v)}</p>`);
    ctx.body = page(lines.join('\n'));
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));

async function readBody(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      ctx.throw(413);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(ctx) {
  try {
    return JSON.parse(await readBody(ctx));
  } catch {
    return ctx.throw(400, 'invalid JSON');
  }
}

// --- Interactions: a login form; consent is granted without asking. -----------------------

async function grantConsent(ctx, interaction) {
  const { prompt, params, session, grantId } = interaction;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
  if (missingOIDCScope) {
    grant.addOIDCScope(missingOIDCScope.join(' '));
  }
  if (missingOIDCClaims) {
    grant.addOIDCClaims(missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const result = { consent: { grantId: await grant.save() } };
  return provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
}

async function showInteraction(ctx, uid) {
  const interaction = await provider.interactionDetails(ctx.req, ctx.res);
  if (interaction.prompt.name === 'consent') {
    ctx.status = 303;
    ctx.redirect(await grantConsent(ctx, interaction));
    return;
  }
  ctx.type = 'html';
  ctx.body = loginForm(uid);
}

async function submitLogin(ctx, uid) {
  const interaction = await provider.interactionDetails(ctx.req, ctx.res);
  const form = new URLSearchParams(await readBody(ctx));
  const login = form.get('login') ?? '';
  const account = interaction.prompt.name === 'login' ? accountByLogin(login) : undefined;
  if (!account) {
    ctx.type = 'html';
    ctx.body = loginForm(uid, { login, error: 'Unknown user' });
    return;
  }
  const result = {
    login: { accountId: subjectOf(login, account), amr: account.amr, acr: account.acr },
  };
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: false,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) {
    return next();
  }
  try {
    if (ctx.method === 'GET') {
      return await showInteraction(ctx, match[1]);
    }
    if (ctx.method === 'POST') {
      return await submitLogin(ctx, match[1]);
    }
    ctx.status = 405;
  } catch (err) {
    if (!(err instanceof errors.SessionNotFound)) {
      throw err;
    }
    // An expired or foreign interaction: oidc-provider's own error page says so.
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page(`<p>${escapeHtml(err.error_description ?? err.message)}</p>`);
  }
  return undefined;
});

// --- Tampering with the token endpoint's ID token. -----------------------------------------

let foreignKey;

async function resign(idToken, change) {
  const header = jose.decodeProtectedHeader(idToken);
  const payload = change(jose.decodeJwt(idToken));
  return new jose.SignJWT(payload).setProtectedHeader(header).sign(signingKey);
}

function alterSignature(idToken) {
  const [header, payload, signature] = idToken.split('.');
  const bytes = Buffer.from(signature, 'base64url');
  bytes[0] ^= 0xff;
  return [header, payload, bytes.toString('base64url')].join('.');
}

async function signWithForeignKey(idToken) {
  // Same kid as the real key: a relying party must verify against the JWKS key, not trust kid.
  foreignKey ??= (await jose.generateKeyPair('RS256')).privateKey;
  const header = jose.decodeProtectedHeader(idToken);
  return new jose.SignJWT(jose.decodeJwt(idToken)).setProtectedHeader(header).sign(foreignKey);
}

const TAMPER = {
  normal: async (t) => t,
  'wrong-audience': (t) => resign(t, (p) => ({ ...p, aud: 'someone-else' })),
  'bad-signature': async (t) => alterSignature(t),
  'foreign-key': signWithForeignKey,
  expired: (t) =>
    resign(t, (p) => {
      const lifetime = p.exp - p.iat;
      const exp = Math.floor(Date.now() / 1000) - 3600;
      return { ...p, iat: exp - lifetime, exp };
    }),
  'wrong-issuer': (t) => resign(t, (p) => ({ ...p, iss: 'http://127.0.0.1:1' })),
  'wrong-nonce': (t) => resign(t, (p) => ({ ...p, nonce: `not-${p.nonce ?? ''}` })),
  'alg-none': async (t) => new jose.UnsecuredJWT(jose.decodeJwt(t)).encode(),
};

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: await TAMPER[idTokenMode](ctx.body.id_token) };
  }
});

// --- Test control endpoints. ---------------------------------------------------------------

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/__test/')) {
    return next();
  }
  const route = `${ctx.method} ${ctx.path}`;
  if (route === 'GET /__test/health') {
    ctx.body = 'ok';
  } else if (route === 'POST /__test/mode') {
    const { id_token: mode } = await readJson(ctx);
    if (!Object.hasOwn(TAMPER, mode)) {
      ctx.throw(400, `unknown id_token mode ${mode}; known: ${Object.keys(TAMPER).join(', ')}`);
    }
    idTokenMode = mode;
    ctx.body = { id_token: idTokenMode };
  } else if (route === 'POST /__test/accounts') {
    Object.assign(accounts, await readJson(ctx));
    ctx.body = { accounts: Object.keys(accounts) };
  } else if (route === 'POST /__test/reset') {
    idTokenMode = 'normal';
    ctx.body = { id_token: idTokenMode };
  } else {
    ctx.status = 404;
  }
  return undefined;
});

const server = provider.listen(port, HOST, () => {
  console.log(`READY ${issuer}`);
});

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
