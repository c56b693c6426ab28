/**
 * What a step costs in iptables processes, read from the owner's own counter
 * (the one the metric `tsoverlay_iptables_runs_total` exports).
 */
import type { Iptables, IptablesCommand } from "../../../driver/kernel/iptables.js";

export type Runs = Record<IptablesCommand, number>;

export const NONE: Runs = { iptables: 0, "iptables-restore": 0, "iptables-save": 0 };
export const ONE_RESTORE: Runs = { ...NONE, "iptables-restore": 1 };

/** The processes `work` made `owner` start, by command. */
export async function costOf(owner: Iptables, work: () => Promise<unknown>): Promise<Runs> {
  const before = owner.runs();
  await work();
  const after = owner.runs();
  return {
    iptables: after.iptables - before.iptables,
    "iptables-restore": after["iptables-restore"] - before["iptables-restore"],
    "iptables-save": after["iptables-save"] - before["iptables-save"],
  };
}
