import { z } from "zod";

/** libnetwork remote IpamDriver request shapes. */
const StringMap = z.record(z.string(), z.string());

export const RequestPoolRequest = z.object({
  AddressSpace: z.string().min(1, "AddressSpace is required"),
  Pool: z.string().default(""),
  SubPool: z.string().default(""),
  Options: StringMap.nullish(),
  V6: z.boolean().default(false),
});
export type RequestPoolRequest = z.infer<typeof RequestPoolRequest>;

export const ReleasePoolRequest = z.object({ PoolID: z.string().min(1, "PoolID is required") });

export const RequestAddressRequest = z.object({
  PoolID: z.string().min(1, "PoolID is required"),
  Address: z.string().default(""),
  Options: StringMap.nullish(),
});
export type RequestAddressRequest = z.infer<typeof RequestAddressRequest>;

export const ReleaseAddressRequest = z.object({
  PoolID: z.string().min(1, "PoolID is required"),
  Address: z.string().min(1, "Address is required"),
});
