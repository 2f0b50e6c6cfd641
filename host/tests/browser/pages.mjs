// Drives headless Chromium through the host's /admin and /docs pages as an operator would
// (including "Re-enable" on the one quarantined plugin the test prepared), and prints what it saw as one JSON object on stdout for
// host/tests/integration/pages_in_browser.rs, which makes the assertions.
//
// Environment: PIXSIM7_URL (the server), PIXSIM7_ADMIN_TOKEN, PIXSIM7_USER_TOKEN (valid, not
// admin), PIXSIM7_SCREENSHOT_DIR, PIXSIM7_CHROMIUM (default /usr/bin/chromium).
// Steps that cannot happen (an element that never shows) fail the script with a message.

import { chromium } from "playwright-core";
import path from "node:path";

const base = required("PIXSIM7_URL");
const adminToken = required("PIXSIM7_ADMIN_TOKEN");
const userToken = required("PIXSIM7_USER_TOKEN");
const screenshots = required("PIXSIM7_SCREENSHOT_DIR");
const executablePath = process.env.PIXSIM7_CHROMIUM || "/usr/bin/chromium";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

// A bound on the whole run, so a hung browser never hangs the test.
setTimeout(() => {
  console.error("the browser run took longer than 180 s");
  process.exit(3);
}, 180_000).unref();

const seen = { requests: [], console: [], pageErrors: [], failedRequests: [] };

/** A fresh browser context whose every request and console message is recorded. */
async function newPage(browser, phase) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const current = { phase };
  page.on("request", (request) =>
    seen.requests.push({
      phase: current.phase,
      url: request.url(),
      method: request.method(),
      authorization: request.headers()["authorization"] || null,
    }),
  );
  page.on("requestfailed", (request) =>
    seen.failedRequests.push({ phase: current.phase, url: request.url(), error: request.failure()?.errorText }),
  );
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      seen.console.push({
        phase: current.phase,
        type: message.type(),
        text: message.text(),
        url: message.location()?.url || null,
      });
    }
  });
  page.on("pageerror", (error) => seen.pageErrors.push({ phase: current.phase, message: String(error) }));
  return { context, page, current };
}

async function signIn(page, token) {
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function dashboard(browser) {
  const { context, page, current } = await newPage(browser, "admin: bad token");
  const result = {};
  await page.goto(base + "/admin");
  await page.locator("#sign-in").waitFor({ state: "visible" });

  await signIn(page, adminToken.slice(0, -4) + "AAAA");
  await page.locator('#message[data-status="401"]').waitFor({ state: "visible" });
  result.badToken = {
    message: await page.locator("#message").innerText(),
    signInVisible: await page.locator("#sign-in").isVisible(),
    sessionControlsVisible: await page.locator("#session").isVisible(),
    dashboardVisible: await page.locator("#dashboard").isVisible(),
    stored: await page.evaluate(() => sessionStorage.length),
  };

  current.phase = "admin: user token";
  await signIn(page, userToken);
  await page.locator('#message[data-status="403"]').waitFor({ state: "visible" });
  result.userToken = { message: await page.locator("#message").innerText() };

  current.phase = "admin: signed in";
  await signIn(page, adminToken);
  await page.locator("#dashboard").waitFor({ state: "visible" });
  await page.locator("article.plugin").first().waitFor();
  result.pageUrl = page.url();
  result.messageVisible = await page.locator("#message").isVisible();
  result.plugins = await page.$$eval("article.plugin", (cards) =>
    cards.map((card) => {
      const field = (name) => card.querySelector(`[data-field="${name}"]`)?.textContent ?? null;
      const counters = {};
      for (const row of card.querySelectorAll("table.counters tbody tr")) {
        const count = (name) => Number(row.querySelector(`[data-counter="${name}"]`).textContent);
        counters[row.dataset.topic] = { emitted: count("emitted"), delivered: count("delivered"), failed: count("failed") };
      }
      return {
        id: card.dataset.pluginId,
        file: card.dataset.file,
        state: field("state"),
        version: field("version"),
        sha256: field("sha256"),
        order: field("order"),
        reason: field("reason"),
        reasonElements: card.querySelector('[data-field="reason"]')?.children.length ?? null,
        routes: [...card.querySelectorAll('[data-field="routes"] li code')].map((code) => code.textContent),
        granted: [...card.querySelectorAll(".chip.granted")].map((chip) => chip.textContent),
        denied: [...card.querySelectorAll(".chip.denied")].map((chip) => chip.textContent),
        counters,
        lag: field("event-lag"),
      };
    }),
  );
  result.imagesOnPage = await page.locator("img").count();
  result.title = await page.title();
  result.nodes = await page.$$eval("svg.dependency-graph g.node", (nodes) =>
    nodes.map((node) => ({ id: node.dataset.pluginId, state: node.dataset.state })),
  );
  result.edges = await page.$$eval("svg.dependency-graph path.edge", (edges) =>
    edges.map((edge) => ({
      from: edge.dataset.from,
      to: edge.dataset.to,
      requirement: edge.dataset.requirement,
      arrow: edge.getAttribute("marker-end"),
    })),
  );
  result.screenshot = path.join(screenshots, "admin.png");
  await page.screenshot({ path: result.screenshot, fullPage: true });

  // A second operator opens the dashboard while the plugin is still quarantined.
  const other = await newPage(browser, "admin: second operator");
  await other.page.goto(base + "/admin");
  await signIn(other.page, adminToken);
  await other.page.locator('article.plugin[data-state="quarantined"]').waitFor();

  current.phase = "admin: re-enable";
  result.reenable = await reenableQuarantined(page);

  // The second operator's page is stale now: its "Re-enable" finds nothing to lift.
  other.current.phase = "admin: re-enable from a stale page";
  const staleCard = other.page.locator('article.plugin[data-state="quarantined"]');
  const staleId = await staleCard.getAttribute("data-plugin-id");
  await staleCard.getByRole("button", { name: "Re-enable" }).click();
  const staleOutcome = other.page.locator(`article.plugin[data-plugin-id="${staleId}"] [data-field="outcome"]`);
  await staleOutcome.waitFor();
  result.reenable.stale = {
    id: staleId,
    outcome: await staleOutcome.innerText(),
    outcomeKind: await staleOutcome.getAttribute("data-kind"),
    state: await other.page.locator(`article.plugin[data-plugin-id="${staleId}"] [data-field="state"]`).innerText(),
  };
  await other.context.close();

  current.phase = "admin: reload";
  await page.reload();
  await page.locator("article.plugin").first().waitFor();
  result.keptAfterReload = await page.locator("#dashboard").isVisible();

  current.phase = "admin: sign out";
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in").waitFor({ state: "visible" });
  result.afterSignOut = {
    stored: await page.evaluate(() => sessionStorage.length),
    pluginsShown: await page.locator("article.plugin").count(),
  };
  await context.close();
  return result;
}

/** The summary tiles: state → count. */
async function summary(page) {
  return page.$$eval("#summary .tile[data-state]", (tiles) =>
    Object.fromEntries(tiles.map((tile) => [tile.dataset.state, Number(tile.querySelector("strong").textContent)])),
  );
}

/** The quarantined plugin's card as shown, a screenshot of it, then a click on its
 * "Re-enable" and the card and summary after the page redrew. */
async function reenableQuarantined(page) {
  const quarantined = page.locator('article.plugin[data-state="quarantined"]');
  if ((await quarantined.count()) !== 1) {
    throw new Error(`expected one quarantined plugin card, found ${await quarantined.count()}`);
  }
  const id = await quarantined.getAttribute("data-plugin-id");
  const card = page.locator(`article.plugin[data-plugin-id="${id}"]`);
  const since = card.locator('[data-field="quarantined-since"]');
  const result = {
    id,
    before: {
      state: await card.locator('[data-field="state"]').innerText(),
      reason: await card.locator('[data-field="reason"]').textContent(),
      reasonVisible: await card.locator('[data-field="reason"]').isVisible(),
      sinceText: await since.innerText(),
      sinceDatetime: await since.getAttribute("datetime"),
      // What the page's own clock and locale make of the time, to compare with the text.
      sinceExpected: await since.evaluate((node) => new Date(node.getAttribute("datetime")).toLocaleString()),
      buttonsInCard: await card.getByRole("button").count(),
      reenableButtonsOnPage: await page.getByRole("button", { name: "Re-enable" }).count(),
      summary: await summary(page),
    },
  };
  await card.scrollIntoViewIfNeeded();
  result.screenshot = path.join(screenshots, "admin-quarantined.png");
  await card.screenshot({ path: result.screenshot });

  await card.getByRole("button", { name: "Re-enable" }).click();
  await page.locator(`article.plugin[data-plugin-id="${id}"]:not([data-state="quarantined"])`).waitFor();
  const outcome = card.locator('[data-field="outcome"]');
  result.after = {
    state: await card.locator('[data-field="state"]').innerText(),
    dataState: await card.getAttribute("data-state"),
    outcome: await outcome.innerText(),
    outcomeKind: await outcome.getAttribute("data-kind"),
    quarantinePanels: await card.locator('[data-field="quarantine"]').count(),
    reenableButtonsOnPage: await page.getByRole("button", { name: "Re-enable" }).count(),
    graphNode: await page.locator(`svg.dependency-graph g.node[data-plugin-id="${id}"]`).getAttribute("data-state"),
    summary: await summary(page),
    messageVisible: await page.locator("#message").isVisible(),
  };
  result.afterScreenshot = path.join(screenshots, "admin-re-enabled.png");
  await card.screenshot({ path: result.afterScreenshot });
  return result;
}

async function docs(browser) {
  const { context, page, current } = await newPage(browser, "docs");
  const result = {};
  await page.goto(base + "/docs");
  await page.locator(".swagger-ui .opblock").first().waitFor();
  result.title = await page.locator(".swagger-ui .info .title").innerText();
  result.operations = await page.$$eval(".swagger-ui .opblock", (blocks) =>
    blocks.map((block) => ({
      method: block.querySelector(".opblock-summary-method")?.textContent.trim().toLowerCase(),
      path: block.querySelector(".opblock-summary-path")?.dataset.path,
    })),
  );
  result.screenshot = path.join(screenshots, "docs.png");
  await page.screenshot({ path: result.screenshot, fullPage: true });

  current.phase = "docs: try /healthz";
  result.healthz = await tryItOut(page, "get", "/healthz");

  current.phase = "docs: authorize";
  await page.getByRole("button", { name: "Authorize" }).first().click();
  const dialog = page.locator(".modal-ux");
  await dialog.locator("input").first().fill(adminToken);
  await dialog.getByRole("button", { name: "Apply credentials" }).click();
  await dialog.getByRole("button", { name: "Remove authorization" }).waitFor();
  await dialog.getByRole("button", { name: "Close", exact: true }).click();
  await dialog.waitFor({ state: "detached" });

  current.phase = "docs: try /api/v1/plugins";
  result.plugins = await tryItOut(page, "get", "/api/v1/plugins");
  result.tryItOutScreenshot = path.join(screenshots, "docs-try-it-out.png");
  await page.screenshot({ path: result.tryItOutScreenshot, fullPage: false });
  await context.close();
  return result;
}

/** Opens an operation, presses "Try it out" then "Execute", and reads the status shown. */
async function tryItOut(page, method, apiPath) {
  const block = page.locator(`.opblock-${method}`).filter({
    has: page.locator(`.opblock-summary-path[data-path="${apiPath}"]`),
  });
  await block.locator(".opblock-summary-control").click();
  await block.getByRole("button", { name: "Try it out" }).click();
  await block.getByRole("button", { name: "Execute" }).click();
  const status = block.locator(".live-responses-table tbody .response .response-col_status");
  await status.waitFor();
  await block.scrollIntoViewIfNeeded();
  return {
    status: (await status.innerText()).trim(),
    body: (await block.locator(".live-responses-table tbody .response .response-col_description pre").first().innerText()).slice(0, 2000),
  };
}

const browser = await chromium.launch({ executablePath, headless: true });
let output;
try {
  output = { admin: await dashboard(browser), docs: await docs(browser), ...seen };
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(output) + "\n");
