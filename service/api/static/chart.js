// The distribution chart (inline SVG) and the number formats the page shares.
// Built with DOM calls only, never innerHTML: names and labels can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 360;
const HEIGHT = 150;
const MARGIN = { left: 10, right: 10, top: 22, bottom: 30 };
const MAX_TICKS = 6;

/** An SVG element with attributes and, optionally, text. */
export function svgElement(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== null) element.textContent = text;
  return element;
}

/** An HTML element with a class and, optionally, text. */
export function htmlElement(tag, className = "", text = null) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== null) element.textContent = text;
  return element;
}

/** A rank value as the task writes it: whole numbers without decimals. */
export function formatValue(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** The label of the rank whose value is `value`, else the value itself. */
export function rankText(distribution, value) {
  const index = distribution.values.indexOf(value);
  if (distribution.labels && index >= 0) return distribution.labels[index];
  return formatValue(value);
}

/** The label of the rank nearest to `value` (for an expected value between two ranks). */
export function nearestLabel(distribution, value) {
  let best = 0;
  distribution.values.forEach((v, i) => {
    if (Math.abs(v - value) < Math.abs(distribution.values[best] - value)) best = i;
  });
  return distribution.labels ? distribution.labels[best] : formatValue(distribution.values[best]);
}

/** Where `value` falls on the rank axis, as a fractional rank index (linear between ranks). */
function rankPosition(values, value) {
  if (value <= values[0]) return 0;
  for (let i = 1; i < values.length; i += 1) {
    if (value <= values[i]) return i - 1 + (value - values[i - 1]) / (values[i] - values[i - 1]);
  }
  return values.length - 1;
}

/** Rank indices to label on the axis: every rank when few, else about MAX_TICKS round steps. */
function tickIndices(count) {
  if (count <= 12) return [...Array(count).keys()];
  const raw = (count - 1) / (MAX_TICKS - 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let i = 0; i < count; i += Math.round(step)) ticks.push(i);
  return ticks;
}

/**
 * The distribution as bars, one per rank, with the central interval shaded and the expected
 * value marked. `unit` is appended to numbers in the accessible summary.
 */
export function distributionChart(task, prediction, unit) {
  const { distribution, interval, expected } = prediction;
  const { values, probabilities } = distribution;
  const count = values.length;
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const slot = plotWidth / count;
  const peak = Math.max(...probabilities) || 1;
  const x = (index) => MARGIN.left + index * slot;
  const baseline = MARGIN.top + plotHeight;
  const suffix = unit && !distribution.labels ? ` ${unit}` : "";
  const low = rankText(distribution, interval.low);
  const high = rankText(distribution, interval.high);

  const chart = svgElement("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label":
      `Distribution of ${task} over ${count} ranks: expected ${expected.toFixed(1)}${suffix}, ` +
      `${Math.round(interval.level * 100)}% interval ${low} to ${high}${suffix}.`,
  });
  const lowIndex = values.indexOf(interval.low);
  const highIndex = values.indexOf(interval.high);
  if (lowIndex >= 0 && highIndex >= lowIndex) {
    chart.append(
      svgElement("rect", {
        class: "interval-band",
        x: x(lowIndex),
        y: MARGIN.top,
        width: (highIndex - lowIndex + 1) * slot,
        height: plotHeight,
      }),
    );
  }
  const gap = count > 30 ? 0.1 : 0.2;
  probabilities.forEach((p, i) => {
    const height = (p / peak) * plotHeight;
    const bar = svgElement("rect", {
      class: "bar",
      x: x(i) + (slot * gap) / 2,
      y: baseline - height,
      width: slot * (1 - gap),
      height,
    });
    bar.append(svgElement("title", {}, `${rankText(distribution, values[i])}: ${(p * 100).toFixed(1)}%`));
    chart.append(bar);
  });
  chart.append(svgElement("line", { class: "axis", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: baseline, y2: baseline }));
  for (const i of tickIndices(count)) {
    const middle = x(i) + slot / 2;
    chart.append(svgElement("line", { class: "tick", x1: middle, x2: middle, y1: baseline, y2: baseline + 4 }));
    chart.append(svgElement("text", { class: "tick-label", x: middle, y: baseline + 16 }, rankText(distribution, values[i])));
  }
  const marker = x(rankPosition(values, expected)) + slot / 2;
  chart.append(svgElement("line", { class: "expected-marker", x1: marker, x2: marker, y1: MARGIN.top - 4, y2: baseline }));
  const anchor = marker < WIDTH * 0.2 ? "start" : marker > WIDTH * 0.8 ? "end" : "middle";
  chart.append(
    svgElement("text", { class: "marker-label", x: marker, y: MARGIN.top - 8, "text-anchor": anchor }, `expected ${expected.toFixed(1)}`),
  );
  return chart;
}

/** The chart's numbers as a table, for screen readers and for anyone who wants them. */
export function numbersTable(distribution) {
  const details = htmlElement("details", "numbers");
  details.append(htmlElement("summary", "", "Probabilities"));
  const table = htmlElement("table");
  const head = table.createTHead().insertRow();
  head.append(htmlElement("th", "", "rank"), htmlElement("th", "", "probability"));
  const body = table.createTBody();
  distribution.values.forEach((value, i) => {
    const row = body.insertRow();
    row.insertCell().textContent = rankText(distribution, value);
    row.insertCell().textContent = `${(distribution.probabilities[i] * 100).toFixed(2)}%`;
  });
  details.append(table);
  return details;
}
