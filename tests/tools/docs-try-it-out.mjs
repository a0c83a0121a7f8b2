// tests/tools/docs-try-it-out.mjs: use the /docs page (Swagger UI) as a new user would, in
// headless Chromium, to create a room with "Try it out".
//
//   BASE_URL=http://127.0.0.1:8080 TOKEN=<a user's bearer token> node docs-try-it-out.mjs
//
// 1. opens BASE_URL/docs and waits for Swagger UI to render the operations;
// 2. "Authorize": types TOKEN into the `bearer` scheme's field, authorizes, closes the dialog;
// 3. expands POST /rooms, "Try it out", replaces the example body with
//    {"name": "From the docs page"}, "Execute";
// 4. reads the live response on the page: status 201 and a room named "From the docs page";
//    prints the room id on stdout;
// 5. fails as well on any console error or uncaught page error, any failed request or HTTP
//    error status, and any request to a host other than BASE_URL's (such requests are blocked
//    and reported: the page must work offline).
// Exits 0 on success, 1 on failure (with SCREENSHOT=<file.png>, a screenshot of the page is
// saved there), 2 on bad usage. Every wait is bounded by STEP_TIMEOUT_MS (default 20000), the
// whole run by TOTAL_TIMEOUT_MS (default 120000). CHROMIUM overrides /usr/bin/chromium.
import { chromium } from "playwright-core";

const NAME = "From the docs page";
const TAG = "rooms";
const OPERATION_ID = "create_room";
const STEP_MS = Number(process.env.STEP_TIMEOUT_MS || 20_000);
const TOTAL_MS = Number(process.env.TOTAL_TIMEOUT_MS || 120_000);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT || "";
const TOKEN = process.env.TOKEN || "";

const log = (msg) => process.stderr.write(`docs-try-it-out: ${msg}\n`);
const usage = (msg) => {
  log(`error: ${msg}`);
  log("usage: BASE_URL=<http://host:port> TOKEN=<bearer token> [SCREENSHOT=<file.png>] node docs-try-it-out.mjs");
  process.exit(2);
};

let base;
try {
  base = new URL(process.env.BASE_URL || "");
} catch {
  usage(`BASE_URL is not a URL: '${process.env.BASE_URL ?? ""}'`);
}
if (base.protocol !== "http:" && base.protocol !== "https:") usage(`BASE_URL must be http(s): ${base}`);
if (!TOKEN) usage("TOKEN is empty");
const ORIGIN = base.origin;
const DOCS_URL = new URL("docs", base.href.endsWith("/") ? base.href : `${base.href}/`).href;

// What the page did wrong, besides the step that failed (if any).
const consoleErrors = [];
const pageErrors = [];
const failedRequests = [];
const httpErrors = [];
const foreignRequests = [];
const blocked = new Set();
const blockedUrls = new Set();

let browser;
let page;
const started = Date.now();

async function screenshot() {
  if (!SCREENSHOT || !page) return;
  try {
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 10_000 });
    log(`screenshot saved to ${SCREENSHOT}`);
  } catch (e) {
    log(`could not save a screenshot to ${SCREENSHOT}: ${firstLine(e)}`);
  }
}

function firstLine(e) {
  return String(e?.message ?? e).split("\n")[0];
}

async function fail(msg) {
  log(`error: ${msg}`);
  await screenshot();
  await closeBrowser();
  process.exit(1);
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = undefined;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
}

// Never hang: whatever is going on, give up after TOTAL_MS (Playwright kills its browser on exit).
setTimeout(() => {
  log(`error: gave up after ${TOTAL_MS} ms (TOTAL_TIMEOUT_MS)`);
  process.exit(1);
}, TOTAL_MS).unref();

// Runs one step; a failure names the step.
async function step(name, fn) {
  log(name);
  try {
    return await fn();
  } catch (e) {
    return fail(`${name}: ${firstLine(e)}`);
  }
}

function problems() {
  const out = [];
  const list = (title, items) => {
    if (items.length > 0) out.push(`${title}:\n${items.map((i) => `  - ${i}`).join("\n")}`);
  };
  list(`requests to a host other than ${ORIGIN} (blocked; the page must work offline)`, foreignRequests);
  list("console errors", consoleErrors);
  list("uncaught page errors", pageErrors);
  list("failed requests", failedRequests);
  list("HTTP error responses", httpErrors);
  return out;
}

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox"],
    timeout: STEP_MS,
  });
} catch (e) {
  log(`error: could not launch ${CHROMIUM}: ${firstLine(e)}`);
  process.exit(1);
}

const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
page = await context.newPage();
page.setDefaultTimeout(STEP_MS);
page.setDefaultNavigationTimeout(STEP_MS);

// Offline: anything not from BASE_URL's origin is recorded and blocked, so that a page that
// would reach out to the Internet fails here rather than hangs or silently works online.
await context.route("**/*", (route) => {
  const url = route.request().url();
  let origin = null;
  try {
    origin = new URL(url).origin;
  } catch {}
  if (origin === ORIGIN || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
  foreignRequests.push(`${route.request().method()} ${url}`);
  blocked.add(route.request());
  blockedUrls.add(url);
  return route.abort("blockedbyclient");
});
page.on("console", (msg) => {
  if (msg.type() === "error") {
    const where = msg.location()?.url ?? "";
    // Chromium's own note about a request blocked above: already reported as foreign.
    if (blockedUrls.has(where) && msg.text().includes("ERR_BLOCKED_BY_CLIENT")) return;
    const at = where ? ` (${where})` : "";
    consoleErrors.push(`${msg.text()}${at}`);
  } else if (msg.type() === "warning") {
    log(`note: console warning: ${msg.text().split("\n")[0]}`);
  }
});
page.on("pageerror", (e) => pageErrors.push(firstLine(e)));
page.on("requestfailed", (req) => {
  if (blocked.has(req)) return;
  failedRequests.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText ?? "failed"}`);
});
page.on("response", (res) => {
  if (res.status() >= 400) httpErrors.push(`${res.request().method()} ${res.url()}: ${res.status()}`);
});

// The call the page makes on "Execute", as the network saw it.
let createRequest = null;
page.on("request", (req) => {
  if (req.method() === "POST" && new URL(req.url()).pathname.replace(/\/+/g, "/") === "/rooms") createRequest = req;
});

const op = page.locator(`#operations-${TAG}-${OPERATION_ID}`);

await step(`open ${DOCS_URL}`, async () => {
  const res = await page.goto(DOCS_URL, { waitUntil: "load" });
  if (!res) throw new Error("no response");
  if (!res.ok()) throw new Error(`the page answered ${res.status()} (at ${res.url()})`);
});

await step("wait for Swagger UI to render the operations", async () => {
  await page.locator(".swagger-ui .information-container .info").waitFor();
  await op.waitFor();
  const n = await page.locator(".swagger-ui .opblock").count();
  const errors = page.locator(".swagger-ui .errors-wrapper");
  if (await errors.count()) {
    throw new Error(`Swagger UI shows errors: ${(await errors.first().innerText()).replace(/\s+/g, " ")}`);
  }
  log(`  ${n} operations rendered`);
});

await step("Authorize with the bearer token", async () => {
  await page.locator(".swagger-ui .auth-wrapper button.authorize").click();
  const dialog = page.locator(".swagger-ui .dialog-ux .modal-ux");
  await dialog.waitFor();
  // The block of the scheme named "bearer" (its heading reads "bearer  (http, Bearer)").
  const scheme = dialog.locator(".auth-container", { has: page.locator("h4", { hasText: /^\s*bearer\s*\(http, Bearer\)/ }) });
  await scheme.waitFor();
  await scheme.locator("#auth-bearer-value").fill(TOKEN);
  // By the text a user sees: Swagger UI labels these buttons "Apply credentials", "Remove
  // authorization" for assistive technologies.
  await scheme.locator("button", { hasText: /^\s*Authorize\s*$/ }).click();
  // Authorized: the field gives way to "******" and a "Logout" button.
  await scheme.locator("button", { hasText: /^\s*Logout\s*$/ }).waitFor();
  await dialog.locator("button", { hasText: /^\s*Close\s*$/ }).click();
  await dialog.waitFor({ state: "detached" });
  if (!(await page.locator(".swagger-ui .auth-wrapper button.authorize.locked").count())) {
    throw new Error("the Authorize button does not show the locked padlock after authorizing");
  }
});

await step("expand POST /rooms", async () => {
  const summary = op.locator(".opblock-summary");
  const text = (await summary.innerText()).replace(/\s+/g, " ");
  if (!/^POST \/rooms\b/.test(text)) throw new Error(`the ${TAG}/${OPERATION_ID} block reads '${text}'`);
  await op.locator(".opblock-summary-control").click();
  await op.locator(".opblock-body").waitFor();
});

await step('"Try it out" and type the body', async () => {
  const button = op.locator("button.try-out__btn").first();
  await button.waitFor();
  if (/try it out/i.test(await button.innerText())) {
    await button.click();
  } else {
    log('  note: already in "Try it out" mode (tryItOutEnabled); the button reads "Cancel"');
  }
  const body = op.locator("textarea.body-param__text");
  await body.waitFor();
  const example = await body.inputValue();
  log(`  example body shown: ${example.replace(/\s+/g, " ")}`);
  await body.fill(JSON.stringify({ name: NAME }));
});

await step('"Execute"', async () => {
  await op.locator("button.execute").click();
});

const room = await step("read the live response", async () => {
  const row = op.locator(".live-responses-table tbody tr.response").first();
  await row.waitFor();
  const status = (await row.locator(".response-col_status").innerText()).trim();
  const bodyBox = row.locator(".response-col_description .highlight-code pre").first();
  let bodyText = "";
  if (await bodyBox.count()) bodyText = await bodyBox.innerText();
  if (status !== "201") {
    const sent = createRequest ? ` (the page sent POST ${createRequest.url()})` : "";
    throw new Error(`status ${status || "(none shown)"}, not 201${sent}; body: ${bodyText.replace(/\s+/g, " ").slice(0, 500)}`);
  }
  let json;
  try {
    json = JSON.parse(bodyText);
  } catch {
    throw new Error(`the response body shown is not JSON: ${bodyText.slice(0, 500)}`);
  }
  if (json?.name !== NAME) throw new Error(`the room shown is named ${JSON.stringify(json?.name)}, not ${JSON.stringify(NAME)}`);
  if (typeof json.id !== "string" || json.id === "") throw new Error(`the room shown has no id: ${bodyText.slice(0, 500)}`);
  const url = (await op.locator(".request-url pre").first().innerText().catch(() => "")).trim();
  if (url) log(`  request URL shown: ${url}`);
  if (createRequest) {
    const auth = (await createRequest.allHeaders())["authorization"];
    if (auth !== `Bearer ${TOKEN}`) throw new Error("the page sent POST /rooms without the bearer token");
  }
  return json;
});

// Let late console messages and requests arrive before judging the page.
await page.waitForTimeout(500);
const found = problems();
if (found.length > 0) await fail(`the page misbehaved (room ${room.id} was created):\n${found.join("\n")}`);

await closeBrowser();
log(`ok: room ${room.id} (code ${room.code}) created from the docs page in ${Date.now() - started} ms`);
process.stdout.write(`${room.id}\n`);
process.exit(0);
