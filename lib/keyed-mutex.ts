/**
 * The one serialization primitive. KeyedMutex serializes async work per key
 * (one network's kernel and store changes never interleave) while different
 * keys run concurrently; Mutex is the same with a single key (one iptables
 * table, one store file). Work runs even when earlier work failed, and a
 * failure is reported to its own caller only.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(work, work);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** Resolves when everything queued so far, under every key, has settled. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}

export class Mutex {
  private readonly keyed = new KeyedMutex();

  run<T>(work: () => Promise<T>): Promise<T> {
    return this.keyed.run("", work);
  }

  idle(): Promise<void> {
    return this.keyed.idle();
  }
}
