// `cargo xtask bench identity`'s driver: sign-ins with an OpenID provider through the server,
// timed at the client, the provider's own time taken out; /health timed alike beside them.
// Needs SOVEREIGN_URL, BENCH_ADMIN (a superadmin's login body) and BENCH_RETURN_TO (an allowed
// redirect URL, never fetched).

import { performance } from "node:perf_hooks";

import { startStandIn } from "./providers.js";

const API = process.env.SOVEREIGN_URL!;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? "300");

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main() {
  const standin = await startStandIn();
  const login = await (await fetch(`${API}/api/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: process.env.BENCH_ADMIN })).json();
  const provider = await fetch(`${API}/api/v1/auth/providers`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${login.access_token}` },
    body: JSON.stringify({ slug: `bench${process.pid}`, kind: "oidc", issuer: standin.url, client_id: standin.clientId, client_secret: standin.clientSecret }),
  });
  if (provider.status !== 201) throw new Error(`provider: ${provider.status} ${await provider.text()}`);
  const slug = `bench${process.pid}`;
  const signIns: number[] = [];
  const health: number[] = [];
  for (let round = -20; round < ROUNDS; round += 1) {
    standin.next = { person: { sub: `bench-${process.pid}-${round % 50}`, email: `bench-${process.pid}-${round % 50}@example.com`, email_verified: true }, mode: "good" };
    const started = await fetch(`${API}/api/v1/auth/providers/${slug}/authorize?redirect_to=${encodeURIComponent(process.env.BENCH_RETURN_TO!)}`, { redirect: "manual" });
    const cookie = started.headers.getSetCookie().find((c) => c.startsWith("sovereign_flow_"))!.split(";")[0]!;
    const atProvider = await fetch(started.headers.get("location")!, { redirect: "manual" });
    const callback = atProvider.headers.get("location")!;
    const providerBefore = standin.tokenMs;
    const t0 = performance.now();
    const back = await fetch(callback, { redirect: "manual", headers: { cookie } });
    const code = new URL(back.headers.get("location")!).searchParams.get("code");
    const pair = await fetch(`${API}/api/v1/auth/providers/exchange`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
    await pair.json();
    const elapsed = performance.now() - t0 - (standin.tokenMs - providerBefore);
    if (!code || pair.status !== 200) throw new Error(`sign-in failed: ${back.headers.get("location")} ${pair.status}`);
    const h0 = performance.now();
    await (await fetch(`${API}/health`)).text();
    const healthMs = performance.now() - h0;
    if (round >= 0) {
      signIns.push(elapsed);
      health.push(healthMs);
    }
  }
  await standin.close();
  signIns.sort((a, b) => a - b);
  health.sort((a, b) => a - b);
  const p50 = percentile(signIns, 50);
  console.log(
    `provider_sign_in_ms p50=${p50.toFixed(2)} p95=${percentile(signIns, 95).toFixed(2)} health_ms p50=${percentile(health, 50).toFixed(2)} ratio_p50=${(p50 / percentile(health, 50)).toFixed(1)} rounds=${ROUNDS}`,
  );
}

await main();
