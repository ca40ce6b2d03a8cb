// Drives hearth-server's web page in headless Chromium (puppeteer-core) as a user would, by
// keyboard: picks the bank, asks a question with Enter, records the answer as it streams, opens a
// cited passage, uploads a file, generates an image (with --image-size, when the server has a FLUX
// model), asks over a bank that does not exist (the server's error must show), and takes
// screenshots at desktop and phone widths. Writes what it saw to OUT/result.json; the C++ test
// (web_page_test.cpp) makes the assertions.
//
//   node web_page.cjs --url http://127.0.0.1:PORT/ --chromium /usr/bin/chromium
//                     --question TEXT --out DIR [--upload FILE] [--key API_KEY]
//                     [--image-size WxH]
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const puppeteer = require("puppeteer-core");

function options() {
  const o = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i + 1 < argv.length; i += 2) o[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const k of ["url", "chromium", "question", "out"]) {
    if (!o[k]) throw new Error(`web_page.cjs: --${k} is required`);
  }
  return o;
}

// Waits until GET /health answers 200 (the server answers 503 while its models load).
async function waitForHealth(url, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const status = await new Promise((resolve) => {
      http.get(new URL("health", url), (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on("error", () => resolve(0));
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${url}health did not answer 200 (last: ${status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const visible = (sel) => (page) => page.$eval(sel, (e) => !e.hidden && e.offsetParent !== null);

async function main() {
  const o = options();
  const result = { console: [], steps: [] };
  await waitForHealth(o.url, 60);
  const args = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--mute-audio"];
  // Chromium refuses to run as root with its sandbox; a test container is root.
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");
  const browser = await puppeteer.launch({
    executablePath: o.chromium,
    headless: true,
    args,
    timeout: 30000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(40000);
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warn") result.console.push(m.text());
    });
    page.on("pageerror", (e) => result.console.push(`page error: ${e.message}`));
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(o.url, { waitUntil: "load" });
    result.title = await page.title();

    // A server with --api-key: the page asks for the key; a wrong one is refused (and asked
    // again), the right one connects. Every request after it carries the key.
    if (o.key) {
      await page.waitForSelector("#key-panel:not([hidden])");
      await page.focus("#api-key");
      await page.keyboard.type("not-the-key");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.querySelector("#server-state").textContent ===
                                       "this server needs an API key");
      result.wrong_key_panel = await visible("#key-panel")(page);
      await page.$eval("#api-key", (e) => { e.value = ""; });
      await page.focus("#api-key");
      await page.keyboard.type(o.key);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#key-panel[hidden]");
      result.steps.push("key");
    }

    // Connected: the banks and models are listed.
    await page.waitForFunction(() => document.querySelector("#bank").value !== "" ||
                                     document.querySelector("#server-state").textContent !==
                                         "connecting\u2026");
    result.state = await page.$eval("#server-state", (e) => e.textContent);
    result.banks = await page.$$eval("#bank option", (os) => os.map((x) => x.value));
    result.models = await page.$$eval("#model option", (os) => os.map((x) => x.value));
    result.image_panel = await visible("#image-panel")(page);
    result.steps.push("connected");

    // Keyboard: the order Tab walks through the page from its start.
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    result.tab_order = [];
    for (let i = 0; i < 8; ++i) {
      await page.keyboard.press("Tab");
      result.tab_order.push(await page.evaluate(() => document.activeElement.id ||
                                                      document.activeElement.tagName));
    }

    // Every text the answer showed while it streamed, in order: the text each update replaced
    // (Chromium sets the one Text node's data, a characterData record with its old value; a
    // replaced node is a removed Text node), the last one replaced by the cited rendering.
    await page.evaluate(() => {
      window.__partials = [];
      new MutationObserver((records) => {
        for (const r of records) {
          const node = r.type === "characterData" ? r.target.parentNode : r.target;
          if (!node || !node.matches || !node.matches(".answer[aria-busy='true']")) continue;
          if (r.type === "characterData") window.__partials.push(r.oldValue);
          for (const gone of r.removedNodes) {
            if (gone.nodeType === Node.TEXT_NODE) window.__partials.push(gone.data);
          }
        }
      }).observe(document.querySelector("#conversation"),
                 { subtree: true, childList: true, characterData: true, characterDataOldValue: true });
    });
    await page.focus("#question");
    await page.keyboard.type(o.question);
    await page.keyboard.press("Enter");
    await page.waitForSelector(".turn .answer:not([aria-busy])", { timeout: 60000 });
    result.partials = await page.evaluate(() => window.__partials);
    result.answer = await page.$eval(".turn .answer", (e) => e.textContent);
    result.turn_status = await page.$eval(".turn .turn-status", (e) => e.textContent);
    result.ask_error = await page.$eval("#ask-error", (e) => (e.hidden ? "" : e.textContent));
    result.citations = await page.$$eval(".turn a.cite", (as) => as.map((a) => ({
                                                          text: a.textContent,
                                                          label: a.getAttribute("aria-label"),
                                                        })));
    result.steps.push("answered");

    // The random model cites nothing, so the page's citation linking is checked on a made-up
    // answer: its text unchanged, each number that names a source a link.
    result.cite_render = await page.evaluate(() => {
      const div = document.createElement("div");
      const source = { file: "a.md", page_first: 2, page_last: 3, heading: "H", text: "t" };
      appendCited(div, "See [1, 3] and [2-4], [1][2] and [7 (no such source)].",
                  new Map([[1, source], [2, source], [3, source]]));
      return {
        text: div.textContent,
        links: Array.from(div.querySelectorAll("a.cite")).map((x) => x.textContent),
        label: div.querySelector("a.cite").getAttribute("aria-label"),
      };
    });

    // Open the first source by keyboard (focus its link, Enter) and read the passage.
    if (result.citations.length > 0) {
      await page.focus(".turn .sources a.cite");
      await page.keyboard.press("Enter");
      await page.waitForSelector("#passage-panel:not([hidden])");
      result.passage = await page.evaluate(() => ({
        title: document.querySelector("#passage-title").textContent,
        file: document.querySelector("#passage-file").textContent,
        page: document.querySelector("#passage-page").textContent,
        heading: document.querySelector("#passage-heading").textContent,
        text: document.querySelector("#passage-text").innerText,
        focused: document.activeElement.id,
      }));
      result.steps.push("passage");
    }
    await page.screenshot({ path: path.join(o.out, "desktop.png") });

    // An upload into the bank, followed to its end.
    if (o.upload) {
      const input = await page.$("#files");
      await input.uploadFile(o.upload);
      await page.focus("#upload");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => {
        const li = document.querySelector("#uploads li");
        return li && (li.classList.contains("done") || li.classList.contains("failed"));
      }, { timeout: 60000 });
      result.upload = await page.evaluate(() => ({
        done: document.querySelector("#uploads li").classList.contains("done"),
        status: document.querySelector("#uploads li .upload-status").textContent,
        progress: document.querySelector("#uploads li progress").value,
        error: document.querySelector("#upload-error").hidden
                   ? ""
                   : document.querySelector("#upload-error").textContent,
        banks: Array.from(document.querySelectorAll("#bank option")).map((x) => x.textContent),
      }));
      result.steps.push("upload");
    }

    // An image, when the server has a FLUX model: the prompt by keyboard (Enter), at the size
    // given (added to the size list: the tiny test pipeline is quick at a tiny size), until the
    // <img> has loaded.
    if (o["image-size"] && result.image_panel) {
      await page.evaluate((size) => {
        const option = document.createElement("option");
        option.value = option.textContent = size;
        document.querySelector("#image-size").append(option);
        document.querySelector("#image-size").value = size;
      }, o["image-size"]);
      await page.focus("#image-prompt");
      await page.keyboard.type("a lighthouse at dawn");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => {
        const img = document.querySelector("#images figure img");
        return (img && img.complete && img.naturalWidth > 0) ||
               !document.querySelector("#image-error").hidden;
      }, { timeout: 60000 });
      result.image = await page.evaluate(() => {
        const img = document.querySelector("#images figure img");
        return {
          width: img ? img.naturalWidth : 0,
          height: img ? img.naturalHeight : 0,
          alt: img ? img.alt : "",
          src_prefix: img ? img.src.slice(0, 22) : "",
          caption: img ? document.querySelector("#images figcaption").textContent : "",
          state: document.querySelector("#image-state").textContent,
          error: document.querySelector("#image-error").hidden
                     ? ""
                     : document.querySelector("#image-error").textContent,
        };
      });
      await (await page.$("#image-panel")).screenshot({ path: path.join(o.out, "image.png") });
      result.steps.push("image");
    }

    // Phone width: one column, nothing wider than the screen. (Not isMobile: puppeteer reloads
    // the page to switch it, and the conversation would be gone.)
    await page.setViewport({ width: 390, height: 844 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(o.out, "phone.png") });
    await page.screenshot({ path: path.join(o.out, "phone-full.png"), fullPage: true });
    result.phone_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);
    result.steps.push("phone");

    // The server's error object, shown as it came: ask over a bank that does not exist.
    await page.evaluate(() => {
      const option = document.createElement("option");
      option.value = option.textContent = "no-such-bank";
      document.querySelector("#bank").append(option);
      document.querySelector("#bank").value = "no-such-bank";
    });
    await page.focus("#question");
    await page.keyboard.type("Is anyone there?");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#ask-error:not([hidden])");
    result.bad_bank_error = await page.$eval("#ask-error", (e) => e.textContent);
    result.steps.push("error");
  } finally {
    await browser.close();
  }
  fs.writeFileSync(path.join(o.out, "result.json"), JSON.stringify(result, null, 1) + "\n");
}

main().catch((e) => {
  process.stderr.write(`web_page.cjs: ${e.stack || e}\n`);
  process.exit(1);
});
