/** True once `p` settled, false when `ms` passed first (Infinity: no limit). */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = p.then(
    () => true,
    () => true,
  );
  if (ms === Infinity) return settled;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), Math.max(0, ms));
    void settled.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
