// permitgate's verifier page: checks a signed receipt (PGR3:/PGR2:/PGR1:) or a temporary permit
// (PGT1:) in the browser, against keys.json beside the page. The formats are those of
// docs/receipts.md and docs/temporary-permit.md; number rules those of src/document.rs
// (tests/vectors/numbers.json keeps the two equal). No third-party code: WebCrypto does
// Ed25519, SHA-256 and HMAC.
'use strict';

const Verifier = (() => {
  const B45 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';
  const SIGNATURE_LEN = 64;
  const MAX_TEXT_LEN = 1024;
  // Gate clocks may be this far off (the gateway's default temp_permits.clock_skew_seconds).
  const CLOCK_SKEW_S = 300;
  const MAX_VALIDITY_S = 7 * 86400;
  const enc = new TextEncoder();

  const KINDS = {
    'PGR3:': { kind: 'receipt', version: 3, context: 'permitgate receipt v3\0', use: 'receipt' },
    'PGR2:': { kind: 'receipt', version: 2, context: 'permitgate receipt v2\0', use: 'receipt' },
    'PGR1:': { kind: 'receipt', version: 1, context: 'permitgate receipt v1\0', use: 'receipt' },
    'PGT1:': { kind: 'temp_permit', version: 1, context: 'permitgate temporary permit v1\0', use: 'temp_permit' },
  };

  class Refused extends Error {
    constructor(status, why) { super(status); this.status = status; this.why = why; }
  }
  const malformed = (why) => new Refused('malformed', why);

  // RFC 9285, strictly: one spelling per byte string (a triple above 65535 or a final pair
  // above 255 has none).
  function base45Decode(text) {
    if (text.length % 3 === 1) throw malformed('base45 length');
    const out = [];
    for (let i = 0; i < text.length; i += 3) {
      const chunk = text.slice(i, i + 3);
      let v = 0;
      for (let j = chunk.length - 1; j >= 0; j--) {
        const d = B45.indexOf(chunk[j]);
        if (d < 0) throw malformed('base45 character');
        v = v * 45 + d;
      }
      if (chunk.length === 3) {
        if (v > 0xffff) throw malformed('base45 group');
        out.push(v >> 8, v & 0xff);
      } else {
        if (v > 0xff) throw malformed('base45 group');
        out.push(v);
      }
    }
    return new Uint8Array(out);
  }

  class Reader {
    constructor(bytes) { this.b = bytes; this.at = 0; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength); }
    need(n) { if (this.at + n > this.b.length) throw malformed('truncated'); }
    bytes(n) { this.need(n); const s = this.b.slice(this.at, this.at + n); this.at += n; return s; }
    u8() { this.need(1); return this.b[this.at++]; }
    i64() { this.need(8); const v = this.view.getBigInt64(this.at, true); this.at += 8; return Number(v); }
    u64() { this.need(8); const v = this.view.getBigUint64(this.at, true); this.at += 8; return v; }
    shortStr() {
      const n = this.u8();
      const raw = this.bytes(n);
      try { return new TextDecoder('utf-8', { fatal: true }).decode(raw); } catch { throw malformed('text'); }
    }
    done() { return this.at === this.b.length; }
  }

  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };

  const RESULTS = [null, 'linked', 'not_linked', 'travel_permit_not_found', 'residence_permit_not_found', 'holder_not_eligible'];
  const STATUSES = ['valid', 'lost', 'damaged', 'revoked', 'replaced', 'expired'];
  const REASONS = [null, 'lost', 'damaged', 'forgotten'];
  const REGIONS = [null, 'hong_kong', 'macao', 'taiwan'];
  const status = (v) => { if (v === 0xff) return 'not_found'; if (v < STATUSES.length) return STATUSES[v]; throw malformed('status'); };
  // A person's name, as the gateway signs it (src/person_name.rs; tests/vectors/names.json
  // keeps the two equal): trimmed of Unicode White_Space (not String.trim, which also takes
  // U+FEFF), NFC, then only letters, marks, space separators and a few punctuation marks;
  // at most 100 bytes of UTF-8.
  const NAME_SPACE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
  const NAME_TRIM = new RegExp(`^${NAME_SPACE}+|${NAME_SPACE}+$`, 'g');
  const NAME_CHAR = /^[\p{L}\p{M}\p{Zs}\-'\u2019.\u00b7\u30fb\u2027,()\uff08\uff09]$/u;
  function normaliseName(input) {
    const name = input.replace(NAME_TRIM, '').normalize('NFC');
    if (name === '') return { error: 'empty' };
    let position = 0;
    for (const c of name) {
      position += 1;
      if (!NAME_CHAR.test(c)) return { error: 'characters', position, codePoint: c.codePointAt(0) };
    }
    if (enc.encode(name).length > 100) return { error: 'length' };
    return { name };
  }
  const validName = (n) => normaliseName(n).name === n;

  // The text a scan or a paste gives: the sealed text itself, or the page's link with it in
  // the fragment, percent-encoded (%20 for the space of base45, %25 for its percent sign).
  // Only a link is decoded: '%' is a base45 character of its own.
  function extract(input) {
    const t = input.trim();
    const hash = t.indexOf('#');
    if (hash < 0) return t;
    try { return decodeURIComponent(t.slice(hash + 1)).trim(); } catch { throw malformed('link encoding'); }
  }

  function open(text) {
    if (text.length > MAX_TEXT_LEN) throw malformed('too long');
    const prefix = text.slice(0, 5);
    const kind = KINDS[prefix];
    if (!kind) throw malformed('prefix');
    const raw = base45Decode(text.slice(5));
    if (raw.length < 9 + SIGNATURE_LEN) throw malformed('truncated');
    if (raw[0] !== kind.version) throw malformed('version');
    const body = raw.slice(0, raw.length - SIGNATURE_LEN);
    return { ...kind, body, signature: raw.slice(raw.length - SIGNATURE_LEN), keyId: hex(body.slice(1, 9)), fields: new Reader(body.slice(9)) };
  }

  function readReceipt(o) {
    const f = o.fields;
    const r = { kind: 'receipt', format: o.version, keyId: o.keyId };
    r.id = f.bytes(16);
    r.checkedAt = f.i64();
    r.snapshotVersion = f.u64();
    r.result = RESULTS[f.u8()];
    if (!r.result) throw malformed('result');
    r.travelPermit = status(f.u8());
    r.residencePermit = status(f.u8());
    r.binding = f.bytes(16);
    r.partner = f.shortStr();
    if (!/^[a-z0-9_.-]{1,64}$/.test(r.partner)) throw malformed('partner');
    r.holderName = null;
    if (o.version >= 2) {
      const name = f.shortStr();
      if (name !== '') {
        if (!validName(name)) throw malformed('holder name');
        r.holderName = name;
      }
    }
    // Format 3: the holder's region (which travel permit), and the partner's names as
    // people read them, each optional.
    r.partnerName = [];
    r.region = null;
    if (o.version === 3) {
      r.region = REGIONS[f.u8()];
      if (!r.region) throw malformed('region');
      for (const lang of ['zh', 'en']) {
        const name = f.shortStr();
        if (/\p{Cc}/u.test(name)) throw malformed('partner name ' + lang);
        if (name !== '') r.partnerName.push(name);
      }
    }
    if (!f.done()) throw malformed('trailing bytes');
    r.signedAt = r.checkedAt;
    return r;
  }

  function readTempPermit(o) {
    const f = o.fields;
    const p = { kind: 'temp_permit', keyId: o.keyId };
    p.permitId = hex(f.bytes(8));
    p.region = REGIONS[f.u8()];
    p.reason = REASONS[f.u8()];
    if (!p.region || !p.reason) throw malformed('region or reason');
    p.issuedAt = f.i64();
    p.expiresAt = f.i64();
    const number = f.shortStr();
    p.holderName = f.shortStr();
    if (!f.done()) throw malformed('trailing bytes');
    const tp = parseTravelPermit(number);
    if (!tp.ok || tp.canonical !== number || tp.region !== p.region) throw malformed('travel permit');
    if (!(p.expiresAt > p.issuedAt && p.expiresAt - p.issuedAt <= MAX_VALIDITY_S)) throw malformed('validity');
    if (!validName(p.holderName)) throw malformed('holder name');
    p.travelPermitMasked = mask(tp.canonical);
    p.signedAt = p.issuedAt;
    return p;
  }

  const parseTime = (s) => (s == null ? null : Date.parse(s) / 1000);

  // The key of `use` with `id` valid at `t` (Unix seconds), as Keyring::find.
  async function findKey(keys, use, id, t) {
    const same = (keys.keys || []).filter((k) => k.use === use && k.id === id);
    if (same.length === 0) throw new Refused('unknown_key');
    const k = same.find((k) => {
      const nb = parseTime(k.not_before), na = parseTime(k.not_after);
      return (nb == null || t >= nb) && (na == null || t <= na);
    });
    if (!k) throw new Refused('key_not_valid');
    if (k.algorithm !== 'Ed25519' || !/^[0-9a-f]{64}$/.test(k.public_key)) throw new Refused('unknown_key');
    const raw = new Uint8Array(k.public_key.match(/../g).map((h) => parseInt(h, 16)));
    try {
      return await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      throw new Refused('unsupported', String(e));
    }
  }

  // The origin's revocation list of temporary permits (src/revocation_list/mod.rs): "PGRL",
  // version 1, key id, issued_at, data version, n, n x (permit id, expires_at), Ed25519
  // over its context and everything before the signature. Refused unless genuine.
  const LIST_CONTEXT = 'permitgate temporary permit revocations v1\0';
  const LIST_HEAD = 4 + 1 + 8 + 8 + 8 + 4;
  async function readRevocations(bytes, keys) {
    const b = new Uint8Array(bytes);
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (b.length < LIST_HEAD + SIGNATURE_LEN || String.fromCharCode(...b.slice(0, 4)) !== 'PGRL' || b[4] !== 1) {
      throw malformed('revocation list');
    }
    const keyId = hex(b.slice(5, 13));
    const issuedAt = Number(view.getBigInt64(13, true));
    const count = view.getUint32(29, true);
    const end = LIST_HEAD + count * 12;
    if (end + SIGNATURE_LEN !== b.length) throw malformed('revocation list length');
    const key = await findKey(keys, 'temp_permit', keyId, issuedAt);
    const ok = await crypto.subtle.verify('Ed25519', key, b.slice(end), concat(enc.encode(LIST_CONTEXT), b.slice(0, end)));
    if (!ok) throw new Refused('bad_signature');
    const ids = new Set();
    for (let at = LIST_HEAD; at < end; at += 12) ids.add(hex(b.slice(at, at + 8)));
    return { issuedAt, count, has: (id) => ids.has(id) };
  }

  // Everything a verdict needs: what the text says, once its signature verified; a
  // temporary permit on `revocations` (a list from readRevocations) is revoked.
  async function verify(input, keys, now = Date.now() / 1000, revocations = null) {
    const text = extract(input);
    const o = open(text);
    const what = o.kind === 'receipt' ? readReceipt(o) : readTempPermit(o);
    // Temporary permits know no key_not_valid: like the gateway, any key not vouching for
    // the permit's issue time is unknown_key.
    const key = await findKey(keys, o.use, o.keyId, what.signedAt).catch((e) => {
      throw e instanceof Refused && e.status === 'key_not_valid' && what.kind === 'temp_permit'
        ? new Refused('unknown_key') : e;
    });
    let ok;
    try {
      ok = await crypto.subtle.verify('Ed25519', key, o.signature, concat(enc.encode(o.context), o.body));
    } catch (e) {
      throw new Refused('unsupported', String(e));
    }
    if (!ok) throw new Refused('bad_signature');
    if (what.kind === 'temp_permit') {
      what.status = revocations && revocations.has(what.permitId) ? 'revoked'
        : now < what.issuedAt - CLOCK_SKEW_S ? 'not_yet_valid'
        : now >= what.expiresAt + CLOCK_SKEW_S ? 'expired' : 'valid';
    } else {
      what.status = 'genuine';
    }
    return what;
  }

  // Number rules: src/document.rs.
  // A character's place as a person counts it: from 1, without the spaces before the
  // number (src/document.rs counts the same).
  function normalise(input) {
    const chars = Array.from(input);
    if (chars.length > 64) return { error: 'length' };
    let lead = 0;
    while (lead < chars.length && /\p{White_Space}/u.test(chars[lead])) lead += 1;
    let s = '';
    for (const [i, c] of chars.entries()) {
      const cp = c.codePointAt(0);
      if (cp === 0x3000) s += ' ';
      else if (cp >= 0xff01 && cp <= 0xff5e) s += String.fromCharCode(cp - 0xfee0);
      else if (cp < 0x80) s += c;
      else return { error: 'characters', position: i + 1 - Math.min(lead, i), codePoint: cp };
    }
    return { value: s.toUpperCase().replace(/^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g, '') };
  }

  const badChar = (b, i) => ({ ok: false, error: 'characters', position: i + 1, codePoint: b.charCodeAt(i) });

  function parseTravelPermit(input) {
    const n = normalise(input);
    if (n.error) return { ok: false, ...n };
    const b = n.value;
    if (b.length === 0) return { ok: false, error: 'empty' };
    let region, nonChinese = false, digits;
    if (b.startsWith('HA')) { region = 'hong_kong'; nonChinese = true; digits = b.slice(2); }
    else if (b.startsWith('MA')) { region = 'macao'; nonChinese = true; digits = b.slice(2); }
    else if (b.startsWith('H')) { region = 'hong_kong'; digits = b.slice(1); }
    else if (b.startsWith('M')) { region = 'macao'; digits = b.slice(1); }
    else if (/^[0-9]/.test(b)) { region = 'taiwan'; digits = b; }
    else if (/^[A-Z0-9]+$/.test(b)) return { ok: false, error: b.length === 9 || b.length === 11 ? 'region_code' : 'length' };
    else return badChar(b, b.search(/[^A-Z0-9]/));
    const bad = digits.search(/[^0-9]/);
    if (bad >= 0) return badChar(b, b.length - digits.length + bad);
    let renewal = false;
    if ((nonChinese && digits.length === 7) || (!nonChinese && digits.length === 8)) renewal = false;
    else if (!nonChinese && digits.length === 10) renewal = true;
    else return { ok: false, error: 'length' };
    return { ok: true, canonical: renewal ? b.slice(0, -2) : b, region };
  }

  const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const CHECK = '10X98765432';
  function realDate(d) {
    const y = +d.slice(0, 4), m = +d.slice(4, 6), day = +d.slice(6, 8);
    if (y < 1900 || m < 1 || m > 12 || day === 0) return false;
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
    return day <= days;
  }

  function parseResidencePermit(input) {
    const n = normalise(input);
    if (n.error) return { ok: false, ...n };
    const b = n.value;
    if (b.length === 0) return { ok: false, error: 'empty' };
    // Characters before length: a space or a letter O inside is the slip to name.
    const bad = Array.from(b).findIndex((d, i) => !(/[0-9]/.test(d) || (i === 17 && d === 'X')));
    if (bad >= 0) return badChar(b, bad);
    if (b.length !== 18) return { ok: false, error: 'length' };
    const region = { 810000: 'hong_kong', 820000: 'macao', 830000: 'taiwan' }[b.slice(0, 6)];
    if (!region) return { ok: false, error: 'region_code' };
    if (!realDate(b.slice(6, 14))) return { ok: false, error: 'birth_date' };
    const sum = WEIGHTS.reduce((acc, w, i) => acc + (b.charCodeAt(i) - 48) * w, 0);
    if (CHECK[sum % 11] !== b[17]) return { ok: false, error: 'check_character' };
    return { ok: true, canonical: b, region };
  }

  // A number in groups of four (a travel permit's letter stays with its digits).
  const group = (n) => n.replace(/(.{4})(?=.)/g, '$1 ');

  function mask(canonical) {
    return canonical.slice(0, 5) + '*'.repeat(Math.max(0, canonical.length - 5));
  }

  // Whether the receipt is about these two numbers: its binding recomputed (formats 2 and
  // 3; format 1 used BLAKE3, which browsers lack).
  async function refersTo(receipt, travel, residence) {
    const tp = parseTravelPermit(travel);
    if (!tp.ok) return { match: 'invalid', field: 'travel_permit', rule: tp.error, position: tp.position, codePoint: tp.codePoint };
    const rp = parseResidencePermit(residence);
    if (!rp.ok) return { match: 'invalid', field: 'residence_permit', rule: rp.error, position: rp.position, codePoint: rp.codePoint };
    if (tp.region !== rp.region) return { match: 'invalid', field: 'residence_permit', rule: 'region_mismatch' };
    if (receipt.format === 1) return { match: 'unsupported' };
    const key = await crypto.subtle.importKey('raw', receipt.id, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, concat(
      enc.encode('permitgate receipt binding v2\0'), enc.encode(tp.canonical), new Uint8Array([0]), enc.encode(rp.canonical))));
    const same = mac.slice(0, 16).every((x, i) => x === receipt.binding[i]);
    // Shown back grouped for reading: a swapped digit is easier to see than to type.
    return { match: same ? 'match' : 'mismatch', typed: [group(tp.canonical), group(rp.canonical)] };
  }

  return { base45Decode, extract, verify, readRevocations, refersTo, parseTravelPermit, parseResidencePermit, normalise, normaliseName, Refused };
})();

// ---- The page -------------------------------------------------------------------------

const Page = (() => {
  // [中文, English]. The Chinese terms are those of src/terms.rs (a test keeps them equal).
  const T = {
    linked: ['关联一致', 'Linked: both documents belong to one person'],
    not_linked: ['不属同一人', 'Not linked: the documents belong to different people'],
    travel_permit_not_found: ['未查到该通行证', 'The travel permit is not on record'],
    residence_permit_not_found: ['未查到该居住证', 'The residence permit is not on record'],
    holder_not_eligible: ['持证人不可申领居住证', "The travel permit's holder cannot hold a residence permit"],
    valid: ['有效', 'valid'],
    lost: ['挂失', 'lost'],
    damaged: ['损毁', 'damaged'],
    revoked: ['作废', 'revoked'],
    replaced: ['已换发', 'replaced'],
    expired: ['过期', 'expired'],
    not_found: ['未查到', 'not found'],
    reason_lost: ['遗失', 'lost'],
    reason_damaged: ['损毁', 'damaged'],
    reason_forgotten: ['未随身携带', 'not carried'],
    genuine: ['凭证真实有效', 'Genuine record'],
    malformed: ['无法识别：格式错误', 'Not genuine: malformed'],
    unknown_key: ['不是真实凭证：签发密钥未知', 'Not genuine: unknown signing key'],
    key_not_valid: ['不是真实凭证：签名时密钥不在有效期内', "Not genuine: the key was not valid at the record's time"],
    bad_signature: ['不是真实凭证：签名无效', 'Not genuine: bad signature'],
    unsupported: ['本浏览器无法核验 Ed25519 签名', 'This browser cannot check Ed25519 signatures'],
    no_keys: ['无法读取公钥文件 keys.json', 'Cannot read the public keys (keys.json)'],
    tp_valid: ['临时通行证有效', 'Temporary permit valid'],
    tp_expired: ['临时通行证已过期', 'Temporary permit expired'],
    tp_not_yet_valid: ['临时通行证尚未生效', 'Temporary permit not yet valid'],
    tp_revoked: ['临时通行证已撤销', 'Temporary permit revoked'],
    why_malformed: ['这段文本不是本平台签发的凭证或临时通行证，或已被改动。', 'This text is not a record or temporary permit of this platform, or it was altered.'],
    why_forged: ['内容与签名不符：凭证被改动或伪造。', 'The content does not match its signature: the record was altered or forged.'],
    why_list: ['签名、有效期与签发机构的撤销名单均已核对。', "Signature, validity and the issuing authority's revocation list checked."],
    why_list_old: ['签名与有效期已核对。撤销名单已超过24小时未更新，是否已被撤销请在线查询。', 'Signature and validity checked. The revocation list is more than 24 hours old: ask online whether it was revoked.'],
    revocation_list: ['撤销名单签发时间', 'Revocation list issued'],
    why_revocation: ['签名与有效期已核对。是否已被撤销只能在线查询（闸机或合作方系统）。', 'Signature and validity checked. Whether it was revoked is known only online (gates, partner systems).'],
    why_genuine: ['由签发机构的密钥签名，内容未被改动。下列为核验时的结果。', "Signed by the issuing authority's key and unaltered. Below is what the check found at the time."],
    result: ['核验结果', 'Result'],
    // A travel permit by its holder's region (src/terms.rs): a Taiwan resident's is not
    // the Hong Kong and Macao residents' one; where the region is not known, neither name.
    travel_permit: ['通行证', 'Travel permit'],
    travel_permit_hong_kong: ['港澳居民来往内地通行证', 'Mainland Travel Permit for Hong Kong and Macao Residents'],
    travel_permit_macao: ['港澳居民来往内地通行证', 'Mainland Travel Permit for Hong Kong and Macao Residents'],
    travel_permit_taiwan: ['台湾居民来往大陆通行证', 'Mainland Travel Permit for Taiwan Residents'],
    residence_permit: ['港澳台居民居住证', 'Residence permit'],
    checked_at: ['核验时间', 'Checked at'],
    // A value written in both languages by the caller (beijing()).
    time: ['', ''],
    records_version: ['数据版本', 'Records version'],
    authority: ['签发机构', 'Issuing authority'],
    requested_by: ['核验方', 'Requested by'],
    holder: ['持证人', 'Holder'],
    receipt_id: ['凭证编号', 'Record id'],
    signing_key: ['签名密钥', 'Signing key'],
    status: ['状态', 'Status'],
    valid_from: ['生效时间', 'Valid from'],
    valid_until: ['失效时间', 'Valid until'],
    reason: ['原因', 'Reason'],
    permit_id: ['临时通行证编号', 'Permit id'],
    numbers_match: ['号码一致：本凭证说的就是这两份证件。', 'The numbers match: this record is about these two documents.'],
    numbers_mismatch: ['请先核对您输入的号码：', 'First check the numbers you typed: '],
    numbers_mismatch_then: ['若输入无误，本凭证说的是另外两份证件。', 'If they are right, this record is about other documents.'],
    numbers_unsupported: ['旧格式（PGR1）凭证的号码只能由签发机构核对。', 'Numbers on an old-format (PGR1) record can only be checked by the authority.'],
    field_travel_permit: ['通行证号码', 'Travel permit number'],
    field_residence_permit: ['居住证号码', 'Residence permit number'],
    rule_empty: ['未填写', 'is empty'],
    rule_length: ['位数不对', 'has the wrong length'],
    rule_characters: ['含有不允许的字符', 'has characters that are not allowed'],
    rule_region_code: ['地区代码不对', 'has a wrong region code'],
    rule_birth_date: ['出生日期不存在', 'has a birth date that does not exist'],
    rule_check_character: ['校验位不对', 'has a wrong check character'],
    rule_region_mismatch: ['与通行证不属同一地区', "is from another region than the travel permit"],
  };

  const $ = (id) => document.getElementById(id);
  let keys = null;
  let current = null;
  // The revocation list beside keys.json, when there is a genuine one.
  let revocations = null;
  // Older than this, a list is not relied on (permitgate temp-permit verify's default).
  const MAX_LIST_AGE_S = 24 * 3600;

  function bi(el, key, extra = ['', '']) {
    const [zh, en] = T[key];
    el.replaceChildren();
    const z = document.createElement('span');
    z.lang = 'zh-Hans';
    z.textContent = zh + extra[0];
    const e = document.createElement('span');
    e.lang = 'en';
    e.className = 'en';
    e.textContent = en + extra[1];
    el.append(z, ' ', e);
    return el;
  }

  // A time as people write it, in Beijing time (UTC+8, no daylight saving): the same
  // words as src/day.rs's for_people. Machine fields stay Unix seconds.
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function beijing(t) {
    const b = new Date((t + 8 * 3600) * 1000); // its UTC fields are Beijing's
    const [y, m, d] = [b.getUTCFullYear(), b.getUTCMonth(), b.getUTCDate()];
    const hm = `${String(b.getUTCHours()).padStart(2, '0')}:${String(b.getUTCMinutes()).padStart(2, '0')}`;
    return ['time', [`${y}年${m + 1}月${d}日 ${hm} 北京时间`, `${d} ${MONTHS[m]} ${y} ${hm} Beijing time`]];
  }

  function fact(label, value) {
    const dt = bi(document.createElement('dt'), label);
    const dd = document.createElement('dd');
    if (typeof value === 'string') dd.textContent = value;
    else bi(dd, value[0], value[1] || ['', '']);
    $('facts').append(dt, dd);
  }

  function show(tone, verdictKey, verdictId, whyKey) {
    const section = $('result');
    section.hidden = false;
    section.dataset.tone = tone;
    bi($('verdict'), verdictKey).dataset.verdict = verdictId;
    if (whyKey) bi($('verdict-why'), whyKey); else $('verdict-why').replaceChildren();
    $('facts').replaceChildren();
    $('numbers').hidden = true;
    $('numbers-verdict').replaceChildren();
    $('numbers-verdict').dataset.match = '';
  }

  function authorityValue() {
    const a = keys && keys.authority;
    return a ? `${a.zh} ${a.en}` : null;
  }

  function showReceipt(r) {
    show('ok', 'genuine', 'genuine', 'why_genuine');
    $('result').dataset.result = r.result;
    fact('result', [r.result]);
    fact(r.region ? 'travel_permit_' + r.region : 'travel_permit', [r.travelPermit]);
    fact('residence_permit', [r.residencePermit]);
    if (r.holderName) fact('holder', r.holderName);
    fact('checked_at', beijing(r.checkedAt));
    fact('records_version', String(r.snapshotVersion));
    const a = authorityValue();
    if (a) fact('authority', a);
    fact('requested_by', r.partnerName.length ? `${r.partnerName.join(' ')} (${r.partner})` : r.partner);
    fact('receipt_id', Array.from(r.id, (x) => x.toString(16).padStart(2, '0')).join(''));
    fact('signing_key', r.keyId);
    $('numbers').hidden = false;
  }

  function showTempPermit(p, list) {
    const why = !list ? 'why_revocation' : list.fresh ? 'why_list' : 'why_list_old';
    show(p.status === 'valid' ? 'ok' : 'warn', 'tp_' + p.status, p.status, why);
    fact('status', [p.status === 'valid' ? 'valid' : p.status === 'expired' ? 'expired' : p.status === 'revoked' ? 'tp_revoked' : 'tp_not_yet_valid']);
    if (list) fact('revocation_list', beijing(list.issuedAt));
    fact('holder', p.holderName);
    fact('travel_permit_' + p.region, p.travelPermitMasked);
    fact('valid_from', beijing(p.issuedAt));
    fact('valid_until', beijing(p.expiresAt));
    fact('reason', ['reason_' + p.reason]);
    const a = authorityValue();
    if (a) fact('authority', a);
    fact('permit_id', p.permitId);
    fact('signing_key', p.keyId);
  }

  async function check(text) {
    current = null;
    if (!keys) { show('bad', 'no_keys', 'no_keys'); return; }
    try {
      const now = Date.now() / 1000;
      const list = revocations && { ...revocations, fresh: now - revocations.issuedAt <= MAX_LIST_AGE_S };
      const what = await Verifier.verify(text, keys, now, list && list.fresh ? list : null);
      current = what;
      if (what.kind === 'receipt') showReceipt(what); else showTempPermit(what, list);
    } catch (e) {
      const status = e instanceof Verifier.Refused ? e.status : 'malformed';
      show('bad', status, status, status === 'malformed' ? 'why_malformed' : status === 'unsupported' ? null : 'why_forged');
    }
    $('verdict-title').focus();
  }

  function describeChar(cp) {
    const hex = 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
    if (cp === 0x20) return ['空格，号码中不应有空格', 'a space: type the number without spaces'];
    if (cp === 0x4f) return [`字母O，${hex}，应为数字0？`, `the letter O, ${hex}: the digit 0?`];
    const c = String.fromCodePoint(cp);
    return cp > 0x20 && cp < 0x7f ? [`“${c}”，${hex}`, `'${c}', ${hex}`] : [hex, hex];
  }

  async function checkNumbers(ev) {
    ev.preventDefault();
    if (!current || current.kind !== 'receipt') return;
    const out = $('numbers-verdict');
    const r = await Verifier.refersTo(current, $('travel-permit').value, $('residence-permit').value);
    out.dataset.match = r.match;
    if (r.match === 'invalid') {
      const [fzh, fen] = T['field_' + r.field];
      bi(out, 'rule_' + r.rule);
      out.firstChild.textContent = `${fzh}：${out.firstChild.textContent}`;
      out.lastChild.textContent = `${fen} ${out.lastChild.textContent}`;
      if (r.rule === 'characters') {
        // Which character, and where: a space, a letter O for a zero.
        const [zh, en] = describeChar(r.codePoint);
        out.firstChild.textContent += `：第${r.position}个字符（${zh}）`;
        out.lastChild.textContent += `: character ${r.position} (${en})`;
      }
      $(r.field === 'travel_permit' ? 'travel-permit' : 'residence-permit').setAttribute('aria-invalid', 'true');
    } else {
      $('travel-permit').removeAttribute('aria-invalid');
      $('residence-permit').removeAttribute('aria-invalid');
      bi(out, r.match === 'match' ? 'numbers_match' : r.match === 'mismatch' ? 'numbers_mismatch' : 'numbers_unsupported');
      if (r.match === 'mismatch') {
        const typed = r.typed.join(' / ');
        const [zh, en] = T.numbers_mismatch_then;
        out.firstChild.textContent += `${typed}。${zh}`;
        out.lastChild.textContent += `${typed}. ${en}`;
      }
    }
  }

  async function start() {
    try {
      const res = await fetch('keys.json', { cache: 'no-cache', credentials: 'omit', referrerPolicy: 'no-referrer' });
      if (!res.ok) throw new Error(String(res.status));
      keys = await res.json();
      const ids = (keys.keys || []).filter((k) => k.use !== 'snapshot').map((k) => k.id).join(', ');
      $('keys-state').textContent = `（${ids}）`;
    } catch {
      keys = null;
    }
    if (keys) {
      try {
        const res = await fetch('temp-permit-revocations.bin', { cache: 'no-cache', credentials: 'omit', referrerPolicy: 'no-referrer' });
        revocations = res.ok ? await Verifier.readRevocations(await res.arrayBuffer(), keys) : null;
      } catch {
        // Absent or not genuine: revocations stay unknown, and the page says so.
        revocations = null;
      }
    }
    $('numbers-form').addEventListener('submit', checkNumbers);
    $('paste-form').addEventListener('submit', (ev) => { ev.preventDefault(); check($('pasted').value); });
    const fromFragment = () => { if (location.hash.length > 1) check(location.hash); };
    window.addEventListener('hashchange', fromFragment);
    fromFragment();
    document.body.dataset.ready = 'true';
  }

  return { start };
})();

window.permitgateVerifier = Verifier;
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', Page.start);
else Page.start();
