// Drives the verifier page in Debian's chromium (playwright-core, no downloaded browser)
// for tests/it/verifier_page.rs, which builds the cases, runs this and judges what it
// prints. Input (a JSON file named by argv[2]): { page, cases: [{ name, url?, paste?,
// numbers?: [{ travel_permit, residence_permit }] }], vectors: { travel: [...],
// residence: [...] }, screenshot? }. Output (stdout): one JSON object of observations.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
const out = { cases: {}, requests: [], vectors: {}, console_errors: [] };
try {
  // A phone: narrow viewport, touch, a phone's pixel ratio.
  const context = await browser.newContext({
    viewport: { width: 360, height: 780 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  context.on('request', (r) => out.requests.push(r.url()));
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', (e) => out.console_errors.push(String(e)));

  const read = async () => page.evaluate(() => {
    const r = document.getElementById('result');
    const n = document.getElementById('numbers-verdict');
    return {
      verdict: document.getElementById('verdict').dataset.verdict,
      result: r.dataset.result || null,
      text: r.innerText,
      numbers_shown: !document.getElementById('numbers').hidden,
      numbers: n.dataset.match ? { match: n.dataset.match, text: n.innerText } : null,
      overflows: document.documentElement.scrollWidth > window.innerWidth,
      focused: document.activeElement ? document.activeElement.id : null,
    };
  });

  for (const c of input.cases) {
    await page.goto(input.page, { waitUntil: 'load' });
    await page.waitForSelector('body[data-ready="true"]');
    if (c.url) {
      // A scan opens the link: a navigation to it, fragment and all.
      await page.goto('about:blank');
      await page.goto(c.url, { waitUntil: 'load' });
      await page.waitForSelector('body[data-ready="true"]');
    } else {
      // Typed as a person would, then submitted with the keyboard.
      await page.fill('#pasted', c.paste);
      await page.focus('#pasted');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Enter');
    }
    await page.waitForFunction(() => document.getElementById('verdict').dataset.verdict !== '');
    const seen = await read();
    seen.checks = [];
    for (const n of c.numbers || []) {
      await page.fill('#travel-permit', n.travel_permit);
      await page.fill('#residence-permit', n.residence_permit);
      await page.evaluate(() => { document.getElementById('numbers-verdict').dataset.match = ''; });
      await page.press('#residence-permit', 'Enter');
      await page.waitForFunction(() => document.getElementById('numbers-verdict').dataset.match !== '');
      seen.checks.push((await read()).numbers);
      // The phone screenshot: one screen, as the reader sees it after scanning.
      if (c.screenshot && input.screenshot && seen.checks.length === 1) {
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: input.screenshot });
      }
    }
    out.cases[c.name] = seen;
  }

  // The page's number rules on the shared vectors.
  out.vectors = await page.evaluate((v) => ({
    travel: v.travel.map((s) => window.permitgateVerifier.parseTravelPermit(s)),
    residence: v.residence.map((s) => window.permitgateVerifier.parseResidencePermit(s)),
    names: v.names.map((s) => window.permitgateVerifier.normaliseName(s)),
  }), input.vectors);
  // A published vector through the page's own functions, with its own keys.
  if (input.vector) {
    out.vector = await page.evaluate(async (v) => {
      const V = window.permitgateVerifier;
      const r = await V.verify(v.receipt, v.keys);
      const yes = await V.refersTo(r, v.travel_permit, v.residence_permit);
      const no = await V.refersTo(r, v.travel_permit, v.other_residence_permit);
      return { status: r.status, result: r.result, holder_name: r.holderName, partner_name: r.partnerName, checked_at: r.checkedAt, match: yes.match, other: no.match };
    }, input.vector);
  }
  // Every form control has a label a screen reader announces.
  out.unlabelled = await page.evaluate(() => Array.from(document.querySelectorAll('input, textarea'))
    .filter((e) => !document.querySelector(`label[for="${e.id}"]`)).map((e) => e.id));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
