/**
 * Where a received chunk's file goes: `<outputDir>/<subdir components>/<stem><filenameAppend><suffix>`, refusing
 * any name that could write outside the output directory (shared/spec/openmsistream-compat.md, sections 1 and 13;
 * upstream joins these names unchecked).
 *
 * The checks are lexical. They do not follow symlinks: a symlink that already exists inside the output directory
 * and points outside it is the operator's doing and is not detected here.
 */

import path from 'node:path';
import { SluiceError } from '../errors.ts';

const FIX =
  'The producer sent a file path that could escape the output directory; quarantine the message and rename ' +
  'the file on the producer side.';

function unsafe(what: string, problem: string, details: Record<string, unknown>): SluiceError {
  return new SluiceError(
    'SLUICE_UNSAFE_PATH',
    `Refusing to write a received file: ${what} ${problem}. ${FIX}`,
    {
      details,
    },
  );
}

/** Problems shared by every path component and by `filenameAppend`. */
function forbiddenCharacter(value: string): string | undefined {
  if (value.includes('\0')) return 'contains a NUL byte';
  if (value.includes('\\')) return 'contains a backslash';
  return undefined;
}

function checkComponent(component: string, what: string, details: Record<string, unknown>): void {
  const bad = forbiddenCharacter(component);
  if (bad) throw unsafe(what, bad, details);
  if (component === '') throw unsafe(what, 'is empty', details);
  if (component === '..') throw unsafe(what, "is '..' (parent directory)", details);
  if (component === '.') throw unsafe(what, "is '.'", details);
}

/**
 * `stem + append + suffix` with the suffix rule of Python 3.11's `pathlib` (which upstream uses): the suffix starts
 * at the last `.` unless that dot is the first or the last character of the name. `a.tar.gz` + `_v2` →
 * `a.tar_v2.gz`; `.bashrc` + `_v2` → `.bashrc_v2`; `a.` + `_v2` → `a._v2`.
 */
export function applyFilenameAppend(filename: string, filenameAppend: string): string {
  if (filenameAppend === '') return filename;
  const dot = filename.lastIndexOf('.');
  if (dot > 0 && dot < filename.length - 1) {
    return filename.slice(0, dot) + filenameAppend + filename.slice(dot);
  }
  return filename + filenameAppend;
}

/**
 * The absolute path, under `outputDir`, of the file a chunk belongs to.
 *
 * `subdirStr` is `''` for the output root, otherwise `/`-separated relative components (as upstream producers
 * write them: no leading, trailing or doubled `/`, no `.` components). `filename` is a single component.
 * Throws `SLUICE_UNSAFE_PATH` when `subdirStr` is absolute or has an empty, `.` or `..` component, when `filename`
 * is empty, `.`, `..` or contains `/`, when any part contains NUL or a backslash, or when the joined path would
 * otherwise not be strictly inside `outputDir`.
 */
export function resolveChunkPath(
  outputDir: string,
  subdirStr: string,
  filename: string,
  filenameAppend: string,
): string {
  const details = { outputDir, subdirStr, filename, filenameAppend };
  if (typeof outputDir !== 'string' || outputDir === '' || outputDir.includes('\0')) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Output directory ${JSON.stringify(outputDir)} is not a usable path. Pass a non-empty directory path.`,
      { details },
    );
  }
  const root = path.resolve(outputDir);

  const parts: string[] = [];
  if (subdirStr !== '') {
    if (subdirStr.startsWith('/'))
      throw unsafe(`subdir_str ${JSON.stringify(subdirStr)}`, 'is absolute', details);
    for (const component of subdirStr.split('/')) {
      checkComponent(component, `subdir_str ${JSON.stringify(subdirStr)} has a component that`, details);
      parts.push(component);
    }
  }

  if (filename.includes('/')) {
    throw unsafe(`filename ${JSON.stringify(filename)}`, "contains '/' (it must be a single name)", details);
  }
  checkComponent(filename, `filename ${JSON.stringify(filename)}`, details);
  const appendProblem =
    forbiddenCharacter(filenameAppend) ?? (filenameAppend.includes('/') ? "contains '/'" : '');
  if (appendProblem)
    throw unsafe(`filename_append ${JSON.stringify(filenameAppend)}`, appendProblem, details);
  const finalName = applyFilenameAppend(filename, filenameAppend);
  checkComponent(finalName, `the file name with filename_append (${JSON.stringify(finalName)})`, details);

  const full = path.resolve(root, ...parts, finalName);
  const rel = path.relative(root, full);
  if (rel === '' || path.isAbsolute(rel) || rel.split(path.sep)[0] === '..') {
    throw unsafe(`the path ${JSON.stringify(full)}`, `is not inside the output directory ${root}`, details);
  }
  return full;
}
