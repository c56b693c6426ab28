/** The `--ipam-opt` keys tsoverlay understands; Docker's own (com.docker.*) hints are tolerated. */
export const POOL_OPTIONS = ["name"] as const;

/** The first `--ipam-opt` key tsoverlay does not understand, if any. */
export function unknownPoolOption(options: Record<string, string>): string | undefined {
  return Object.keys(options).find((k) => !(POOL_OPTIONS as readonly string[]).includes(k) && !k.startsWith("com.docker."));
}
