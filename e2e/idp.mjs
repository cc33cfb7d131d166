// A real OpenID Connect provider for the single sign-on tests: the `oidc-provider` package
// (pinned in package-lock.json) on a loopback port, with its development login page (any
// listed user, any password), a confidential client for the console, a public client
// for a command-line tool, and JWT access tokens (RFC 9068) for keyledger's API.
//
// For the refusal tests it can misbehave as a broken or hostile provider would: the ID
// token its token endpoint hands out is altered, re-signed for another audience, expired,
// or signed by a key it does not publish. `rotate()` replaces its signing key (a new `kid`,
// the old key no longer published), as a provider's key rotation does.
import http from "node:http";
import { Provider } from "oidc-provider";
import { SignJWT, exportJWK, generateKeyPair, importJWK } from "jose";

export const API_RESOURCE = "https://keyledger.test/api";
export const API_AUDIENCE = "keyledger-api";

async function signingKey(kid) {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid, alg: "ES256", use: "sig" };
}

function b64json(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

/** Starts the provider; `users` may sign in, browsers come back to `redirectUri`. */
export async function startIdp({ users, redirectUri, cliRedirectUri, clientSecret }) {
  const server = http.createServer((req, res) => current.callback()(req, res));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let key = await signingKey("key-1");
  let mode = null;
  let current;

  const build = () => {
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: "keyledger-console",
          client_secret: clientSecret,
          redirect_uris: [redirectUri],
          grant_types: ["authorization_code"],
          response_types: ["code"],
          id_token_signed_response_alg: "ES256",
        },
        {
          client_id: "keyledger-cli",
          token_endpoint_auth_method: "none",
          redirect_uris: [cliRedirectUri],
          grant_types: ["authorization_code"],
          response_types: ["code"],
          id_token_signed_response_alg: "ES256",
        },
      ],
      jwks: { keys: [key] },
      cookies: { keys: ["keyledger-e2e-cookie-key"] },
      findAccount: async (ctx, sub) =>
        users.includes(sub)
          ? { accountId: sub, claims: async () => ({ sub, preferred_username: sub }) }
          : undefined,
      claims: { openid: ["sub"], profile: ["preferred_username"] },
      features: {
        devInteractions: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: (ctx, client) =>
            client.clientId === "keyledger-cli" ? API_RESOURCE : undefined,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: "read",
            audience: API_AUDIENCE,
            accessTokenTTL: 600,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "ES256" } },
          }),
        },
      },
      extraTokenClaims: (ctx, token) =>
        token.accountId ? { preferred_username: token.accountId } : undefined,
      // No consent screen: the test users grant what is asked.
      loadExistingGrant: async (ctx) => {
        const grant = new ctx.oidc.provider.Grant({
          clientId: ctx.oidc.client.clientId,
          accountId: ctx.oidc.session.accountId,
        });
        grant.addOIDCScope("openid profile");
        grant.addOIDCClaims(["preferred_username"]);
        grant.addResourceScope(API_RESOURCE, "read");
        await grant.save();
        return grant;
      },
    });
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === "/token" && ctx.status === 200 && mode && ctx.body?.id_token) {
        ctx.body = { ...ctx.body, id_token: await misbehave(ctx.body.id_token) };
      }
    });
    return provider;
  };

  const misbehave = async (idToken) => {
    const [header, payload, signature] = idToken.split(".");
    const claims = b64json(payload);
    const now = Math.floor(Date.now() / 1000);
    const resign = async (changed, with_ = key) =>
      new SignJWT(changed)
        .setProtectedHeader({ alg: "ES256", kid: with_.kid, typ: "JWT" })
        .sign(await importJWK(with_, "ES256"));
    switch (mode) {
      case "tampered": {
        const forged = { ...claims, sub: "olga", preferred_username: "olga" };
        return [header, Buffer.from(JSON.stringify(forged)).toString("base64url"), signature].join(".");
      }
      case "audience":
        return resign({ ...claims, aud: "someone-else" });
      case "expired":
        return resign({ ...claims, iat: now - 7200, exp: now - 3600 });
      case "unknown-key":
        return resign(claims, await signingKey("not-published"));
      default:
        throw new Error(`no mode ${mode}`);
    }
  };

  current = build();
  return {
    issuer,
    /** From now on the ID tokens handed out are altered as `m` says (null: as issued). */
    misbehave(m) {
      mode = m;
    },
    /** A new signing key under a new kid; the old one is no longer published. */
    async rotate(kid) {
      key = await signingKey(kid);
      current = build();
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
