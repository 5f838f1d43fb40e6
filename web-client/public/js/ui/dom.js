// A small element builder, so that views read as the markup they make.

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'Mute'}, child, 'text')
 * Properties starting with `on` become listeners; `class`, `for`, `aria-*`,
 * `data-*`, anything with a dash and any name the element has no property for
 * (`novalidate`, whose property is `noValidate`) become attributes; the rest are
 * properties.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (key === 'class' || key === 'for' || key.includes('-') || key === 'role' || !(key in element)) {
      element.setAttribute(key, value === true ? '' : String(value));
    } else {
      element[key] = value;
    }
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** Swaps the content of `parent` for `children`. */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren(...children.flat().filter(Boolean));
}

/** Initials for an avatar: "Ada Lovelace" -> "AL", "bob" -> "B". */
export function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words.at(-1)] : words;
  return letters.map((word) => [...word][0].toUpperCase()).join('') || '?';
}

/** A stable hue for a name, so that each person's avatar keeps its colour. */
export function hueFor(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}
