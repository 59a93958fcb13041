import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/paths.js';

/**
 * The README is the five-minute page and docs/ holds the rest, each thing said once, so pages
 * point at each other a lot: a renamed heading or a moved file must fail here, not in a reader's
 * browser. Links are checked the way GitHub renders them: relative to the page, headings turned
 * into anchors by GitHub's slug rules.
 */
const README_MAX_LINES = 200;

const pages = ['README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Markdown without fenced code blocks and inline code spans, where `](` is not a link. */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/(`+)[^`]*?\1/g, '');
}

/** Targets of inline links and images, e.g. `docs/aws.md#iam` from `[IAM](docs/aws.md#iam)`. */
function linkTargets(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] ?? '');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor a page offers; a repeated heading gets -1, -2 ... as on GitHub. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const m of prose(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1] ?? '');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

const isExternal = (target: string): boolean => /^[a-z][a-z0-9+.-]*:/i.test(target);

const links = pages.flatMap((page) =>
  linkTargets(readFileSync(join(REPO_ROOT, page), 'utf8'))
    .filter((target) => !isExternal(target))
    .map((target) => {
      const [path = '', anchor] = target.split('#', 2);
      const file = path === '' ? join(REPO_ROOT, page) : resolve(REPO_ROOT, dirname(page), decodeURIComponent(path));
      return { page, target, file, anchor };
    }),
);

describe('link and heading rules', () => {
  it.each([
    ['Relay: how commands reach HAProxy', 'relay-how-commands-reach-haproxy'],
    ['Guards: when in doubt, change nothing', 'guards-when-in-doubt-change-nothing'],
    ['Node.js', 'nodejs'],
    ['`--force` and friends', '--force-and-friends'],
    ['See [the lab](docs/lab.md)', 'see-the-lab'],
  ])('turns the heading "%s" into the anchor "%s"', (heading, expected) => {
    expect(slug(heading)).toBe(expected);
  });

  it('finds links and images but not link-like text inside code', () => {
    const text = ['[a](x.md) and ![chart](img/c.svg "title")', '`[not](inline.md)`', '```', '[not](fenced.md)', '```', '[b](y.md#part)'].join('\n');
    expect(linkTargets(text)).toEqual(['x.md', 'img/c.svg', 'y.md#part']);
  });
});

describe('the documentation', () => {
  it(`keeps the README within ${README_MAX_LINES} lines`, () => {
    const lines = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').replace(/\n$/, '').split('\n');
    expect(lines.length).toBeLessThanOrEqual(README_MAX_LINES);
  });

  it('links every page in docs/ from the README', () => {
    const fromReadme = new Set(links.filter((l) => l.page === 'README.md').map((l) => relative(REPO_ROOT, l.file)));
    expect(pages.filter((p) => p.startsWith('docs/') && !fromReadme.has(p))).toEqual([]);
  });

  it.each(links.map((l) => [l.page, l.target, l.file] as const))('%s: the link to %s points at a file that exists', (_page, _target, file) => {
    expect(existsSync(file) && statSync(file).isFile()).toBe(true);
  });

  const anchored = links.filter((l) => l.anchor !== undefined && l.file.endsWith('.md'));
  it.each(anchored.map((l) => [l.page, l.target, l.file, l.anchor ?? ''] as const))('%s: the link to %s points at a heading that exists', (_page, _target, file, anchor) => {
    expect(existsSync(file)).toBe(true);
    expect([...anchors(readFileSync(file, 'utf8'))]).toContain(anchor);
  });
});
