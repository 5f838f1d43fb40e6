// Sizing the video grid: the column count that gives every tile the largest size.

/**
 * @param {number} count tiles to place
 * @param {number} width available width in px
 * @param {number} height available height in px
 * @param {{gap?: number, aspect?: number}} [options] gap between tiles; tile width/height
 * @returns {{columns: number, tileWidth: number}}
 */
export function bestGrid(count, width, height, { gap = 12, aspect = 16 / 9 } = {}) {
  let best = { columns: 1, tileWidth: 0 };
  for (let columns = 1; columns <= Math.max(1, count); columns += 1) {
    const rows = Math.ceil(count / columns);
    const byWidth = (width - gap * (columns - 1)) / columns;
    const byHeight = ((height - gap * (rows - 1)) / rows) * aspect;
    const tileWidth = Math.floor(Math.min(byWidth, byHeight));
    if (tileWidth > best.tileWidth) best = { columns, tileWidth };
  }
  return best;
}
