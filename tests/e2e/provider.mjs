// A test-only OpenID provider, built on the certified `oidc-provider`, that issues tokens shaped
// like Microsoft Entra ID's, for the end-to-end tests of oidc_middleware. Never use it for
// anything else: passwords are plain text in directory.json and nothing is persisted.
//
//   node provider.mjs [--port N] [--directory directory.json]
//
// One Node HTTP server on 127.0.0.1 carries two issuers of one tenant over one key set, laid out
// as Entra lays them out under login.microsoftonline.com:
//
//   v1: issuer http://127.0.0.1:N/{tenant}/      (ends in '/'); tokens: appid, appidacr, ver 1.0
//   v2: issuer http://127.0.0.1:N/{tenant}/v2.0  (no '/');      tokens: azp, azpacr, ver 2.0
//
// Each is its own Provider instance, mounted under its path prefix. Access tokens are JWTs
// (resource indicators + accessTokenFormat 'jwt') with header typ JWT, tid, oid, sub, and either
// `roles` (app-only tokens: client_credentials) or `scp` (delegated tokens: a space-separated
// string). The audience follows Entra: v1 tokens carry the App ID URI asked for
// (api://quay-api), v2 tokens the API's application (client) id.
//
// Grants on both issuers' token endpoints (client authentication: client_secret_basic):
//   client_credentials                             resource=<App ID URI>: an app-only token
//   password                                       username, password, resource and/or scope:
//                                                  the user's token for the calling app (Entra's
//                                                  ROPC; the non-interactive way to get one here)
//   urn:ietf:params:oauth:grant-type:jwt-bearer    requested_token_use=on_behalf_of, assertion =
//                                                  a user's token addressed to the calling app,
//                                                  resource and/or scope: On-Behalf-Of
// Delegated scopes may be asked for as `resource=api://quay-api&scope=repo:read` or in Entra v2's
// form `scope=api://quay-api/repo:read` (or `api://quay-api/.default`: every consented scope).
//
// Test-only endpoint: POST /_test/rotate-keys generates a new RSA key; from then on tokens are
// signed with it and the JWKS lists it first, the previous keys still after it (with
// ?retire=previous, the previous keys are removed from the JWKS). It answers {kid, kids}.
//
// On start it prints one JSON line {"ready":true,"port":N,...} on stdout (with --port 0, the
// default, the system picks a free port). Errors of the provider (which oidc-provider otherwise
// keeps to itself) are written to stderr.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1'; // never `localhost`: oidc-provider builds endpoint URLs from the Host header
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    directory: { type: 'string', default: fileURLToPath(new URL('./directory.json', import.meta.url)) },
  },
});

const directory = JSON.parse(readFileSync(options.directory, 'utf8'));
const { tenant } = directory;
const usersByObjectId = new Map(
  Object.entries(directory.users).map(([username, user]) => [user.objectId, { ...user, username }]),
);

// ---------------------------------------------------------------------------------------------
// Keys: one set for both issuers, newest first. The newest signs.

function newSigningKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  // Entra's kids are 27-character base64url SHA-1 thumbprints; this one is the key's.
  const kid = crypto.createHash('sha1').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64url');
  // No `alg` member, as in Entra's JWKS.
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

const state = {
  origin: undefined,
  keys: [newSigningKey()],
  publicKeys: new Map(),
  handlers: undefined,
};

function issuers() {
  return { '1.0': `${state.origin}/${tenant}/`, '2.0': `${state.origin}/${tenant}/v2.0` };
}

// ---------------------------------------------------------------------------------------------
// Resource servers (the tenant's APIs) and the Entra claim shapes.

function resourceServerInfo(version, resource, clientId) {
  const api = directory.apis[resource];
  if (!api) {
    throw new errors.InvalidTarget(`AADSTS500011: resource ${JSON.stringify(resource)} is not in the tenant`);
  }
  return {
    scope: api.scopes.join(' '),
    audience: version === '1.0' ? resource : api.appId,
    accessTokenFormat: 'jwt',
    accessTokenTTL: directory.apps[clientId]?.accessTokenTTL ?? 3600,
    jwt: { sign: { alg: 'RS256', kid: state.keys[0].kid } },
  };
}

// Entra's `sub` is pairwise: the same user has a different one for each application.
function pairwiseSubject(objectId, appId) {
  return crypto.createHash('sha256').update(`${tenant}|${appId}|${objectId}`).digest('base64url').slice(0, 43);
}

// formats.customizers.jwt: replace oidc-provider's RFC 9068 payload (client_id, scope, jti,
// typ at+jwt) with Entra's.
function shapeLikeEntra(version, token, jwt) {
  const { payload } = jwt;
  const clientId = token.clientId;
  const app = directory.apps[clientId];
  const resource = token.resourceServer.identifier();
  const user = token.accountId === undefined ? undefined : usersByObjectId.get(token.accountId);
  const claims = {
    aud: payload.aud,
    iss: payload.iss,
    iat: payload.iat,
    nbf: payload.iat,
    exp: payload.exp,
  };
  if (version === '1.0') {
    Object.assign(claims, { appid: clientId, appidacr: '1' }); // 1: the client used a secret
  } else {
    Object.assign(claims, { azp: clientId, azpacr: '1' });
  }
  if (user) {
    claims.name = user.name;
    claims.oid = user.objectId;
    if (version === '1.0') {
      Object.assign(claims, { upn: user.username, unique_name: user.username });
    } else {
      claims.preferred_username = user.username;
    }
    claims.scp = token.scope ?? '';
    claims.sub = pairwiseSubject(user.objectId, directory.apis[resource].appId);
  } else {
    claims.idtyp = 'app';
    claims.oid = app.servicePrincipal;
    const roles = app.roles?.[resource] ?? [];
    if (roles.length) {
      claims.roles = roles;
    }
    claims.sub = app.servicePrincipal;
  }
  Object.assign(claims, { tid: tenant, uti: payload.jti, ver: version });
  jwt.payload = claims;
  const signingKid = token.resourceServer.jwt.sign.kid;
  jwt.header = version === '1.0' ? { typ: 'JWT', x5t: signingKid } : { typ: 'JWT' };
}

// ---------------------------------------------------------------------------------------------
// Delegated tokens: the password grant (a user's token for an app) and On-Behalf-Of.

function invalidGrant(description) {
  return new errors.CustomOIDCProviderError('invalid_grant', description);
}

// Which API and which of its scopes a request asks for: `resource` plus plain scope names, or
// Entra v2's `scope=<App ID URI>/<scope>` (`/.default`: everything consented). No scope at all
// means everything consented too, as with Entra's v1 endpoint.
function requestedScopes(params, client) {
  const words = (params.scope ?? '').split(' ').filter((word) => word && !OIDC_SCOPES.has(word));
  let resource = params.resource;
  if (Array.isArray(resource)) {
    throw new errors.InvalidTarget('only one resource per token');
  }
  const names = [];
  for (const word of words) {
    const api = Object.keys(directory.apis).find((uri) => word.startsWith(`${uri}/`));
    if (api === undefined) {
      names.push(word);
      continue;
    }
    if (resource !== undefined && resource !== api) {
      throw new errors.InvalidTarget('scopes of more than one resource');
    }
    resource = api;
    names.push(word.slice(api.length + 1));
  }
  if (resource === undefined) {
    throw new errors.InvalidTarget('AADSTS900144: a resource or an <App ID URI>/<scope> is required');
  }
  resourceServerInfo('2.0', resource, client.clientId); // unknown resources are refused here
  const consented = directory.apps[client.clientId].delegated?.[resource] ?? [];
  const wanted = names.length === 0 || names.includes('.default') ? consented : names;
  const missing = wanted.filter((name) => !consented.includes(name));
  if (wanted.length === 0 || missing.length) {
    throw invalidGrant(
      `AADSTS65001: no consent for ${client.clientId} to use ${resource} ${missing.join(' ') || '(any scope)'}`,
    );
  }
  return { resource, scopes: wanted };
}

async function issueDelegatedToken(version, ctx, user) {
  const { provider, client, params } = ctx.oidc;
  const { resource, scopes } = requestedScopes(params, client);
  const token = new provider.AccessToken({
    accountId: user.objectId,
    client,
    gty: params.grant_type,
    scope: scopes.join(' '),
  });
  token.resourceServer = new provider.ResourceServer(resource, resourceServerInfo(version, resource, client.clientId));
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();
  ctx.body = {
    token_type: 'Bearer',
    scope: token.scope,
    expires_in: token.expiration,
    access_token: value,
  };
}

async function passwordGrant(version, ctx) {
  const { username, password } = ctx.oidc.params;
  const user = directory.users[username ?? ''];
  const given = Buffer.from(password ?? '');
  const expected = Buffer.from(user?.password ?? '');
  if (!user || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw invalidGrant('AADSTS50126: invalid username or password');
  }
  await issueDelegatedToken(version, ctx, { ...user, username });
}

// A token of this tenant (either issuer), verified with the provider's own published keys.
function verifyOwnToken(value) {
  const parts = String(value).split('.');
  if (parts.length !== 3) {
    throw invalidGrant('AADSTS50027: the assertion is not a JWT');
  }
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch {
    throw invalidGrant('AADSTS50027: the assertion is not a JWT');
  }
  const key = state.publicKeys.get(header.kid);
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  if (
    header.alg !== 'RS256'
    || key === undefined
    || !crypto.verify('RSA-SHA256', signed, key, Buffer.from(parts[2], 'base64url'))
  ) {
    throw invalidGrant('AADSTS50013: the assertion signature is invalid');
  }
  if (!Object.values(issuers()).includes(claims.iss)) {
    throw invalidGrant('AADSTS50013: the assertion was issued by another tenant');
  }
  if (!(typeof claims.exp === 'number' && claims.exp > Date.now() / 1000)) {
    throw invalidGrant('AADSTS500133: the assertion has expired');
  }
  return claims;
}

async function onBehalfOfGrant(version, ctx) {
  const { client, params } = ctx.oidc;
  if (params.requested_token_use !== 'on_behalf_of') {
    throw new errors.InvalidRequest("requested_token_use must be 'on_behalf_of'");
  }
  if (!params.assertion) {
    throw new errors.InvalidRequest('assertion is required');
  }
  const assertion = verifyOwnToken(params.assertion);
  // The user's token must be addressed to the middle tier itself (its App ID URI or app id).
  const own = Object.entries(directory.apis).find(([, api]) => api.appId === client.clientId);
  const audiences = own === undefined ? [] : [own[0], own[1].appId];
  if (!audiences.includes(assertion.aud)) {
    throw invalidGrant(`AADSTS50013: the assertion is addressed to ${assertion.aud}, not to ${client.clientId}`);
  }
  const user = usersByObjectId.get(assertion.oid);
  if (user === undefined || typeof assertion.scp !== 'string') {
    throw invalidGrant('AADSTS50013: the assertion is not a user (delegated) token');
  }
  await issueDelegatedToken(version, ctx, user);
}

// ---------------------------------------------------------------------------------------------
// The two Provider instances. Built again on key rotation (the key set of a Provider is fixed
// when it is constructed); in-memory state is of no concern: JWT access tokens are not stored.

function accessTokenTTL(_ctx, token) {
  return token.resourceServer?.accessTokenTTL ?? 3600;
}

function buildProvider(version, issuer) {
  const provider = new Provider(issuer, {
    clients: Object.entries(directory.apps).map(([clientId, app]) => ({
      client_id: clientId,
      client_secret: app.secret,
      client_name: app.name,
      grant_types: app.grants,
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: state.keys },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, resource, client) =>
          resourceServerInfo(version, resource, client.clientId),
      },
    },
    formats: { customizers: { jwt: async (_ctx, token, jwt) => shapeLikeEntra(version, token, jwt) } },
    ttl: { AccessToken: accessTokenTTL, ClientCredentials: accessTokenTTL },
    // Where Entra publishes its keys: /{tenant}/discovery/keys and /{tenant}/discovery/v2.0/keys.
    routes: { jwks: version === '1.0' ? '/discovery/keys' : '/discovery/v2.0/keys' },
  });
  provider.registerGrantType('password', (ctx) => passwordGrant(version, ctx), [
    'username',
    'password',
    'scope',
    'resource',
  ]);
  provider.registerGrantType(JWT_BEARER, (ctx) => onBehalfOfGrant(version, ctx), [
    'assertion',
    'requested_token_use',
    'scope',
    'resource',
  ]);
  const report = (kind) => (ctx, error) => {
    const detail = error.error_description ?? error.message;
    console.error(`[v${version}] ${kind} ${ctx.method} ${ctx.path}: ${error.error ?? error.name}: ${detail}`);
    if (kind === 'server_error') {
      console.error(error.stack);
    }
  };
  provider.on('server_error', report('server_error'));
  provider.on('grant.error', report('grant.error'));
  return provider;
}

function buildProviders() {
  state.publicKeys = new Map(state.keys.map((jwk) => [jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' })]));
  const built = Object.fromEntries(
    Object.entries(issuers()).map(([version, issuer]) => [version, buildProvider(version, issuer).callback()]),
  );
  state.handlers = built;
}

function rotateKeys(retirePrevious) {
  const key = newSigningKey();
  state.keys = retirePrevious ? [key] : [key, ...state.keys];
  buildProviders();
  return { kid: key.kid, kids: state.keys.map((jwk) => jwk.kid) };
}

// ---------------------------------------------------------------------------------------------
// The HTTP server: /{tenant}/v2.0/... -> v2, /{tenant}/... -> v1, /_test/... -> test controls.

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function under(path, prefix) {
  return path === prefix || path.startsWith(`${prefix}/`);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, state.origin);
  if (url.pathname === '/_test/rotate-keys') {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'POST only' });
      return;
    }
    sendJson(res, 200, rotateKeys(url.searchParams.get('retire') === 'previous'));
    return;
  }
  let version;
  let prefix;
  if (under(url.pathname, `/${tenant}/v2.0`)) {
    [version, prefix] = ['2.0', `/${tenant}/v2.0`];
  } else if (under(url.pathname, `/${tenant}`)) {
    [version, prefix] = ['1.0', `/${tenant}`];
  } else {
    sendJson(res, 404, { error: 'not_found', error_description: `no tenant at ${url.pathname}` });
    return;
  }
  // Mounted as connect/express mount a sub-app: oidc-provider reads its mount path from this.
  req.originalUrl = req.url;
  req.url = req.url.slice(prefix.length) || '/';
  state.handlers[version](req, res);
});

// Idle keep-alive connections stay open for the whole test run: Node's default (5 s) closes them
// while clients (the tests, the middleware's key fetcher) may be about to reuse them, and the
// request that loses that race fails.
server.keepAliveTimeout = 10 * 60 * 1000;

server.on('error', (error) => {
  console.error(`cannot listen on ${HOST}:${options.port}: ${error.code ?? error.message}`);
  process.exit(1);
});

server.listen(Number(options.port), HOST, () => {
  const { port } = server.address();
  state.origin = `http://${HOST}:${port}`;
  buildProviders();
  console.log(JSON.stringify({ ready: true, port, tenant, issuers: issuers(), kid: state.keys[0].kid }));
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
