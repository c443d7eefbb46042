// Learning-rate schedules: linear warmup, then cosine or linear decay to minLrRatio·lr.

export type Schedule = 'cosine' | 'linear' | 'constant';

export interface ScheduleConfig { lr: number; warmupSteps: number; steps: number; schedule: Schedule; minLrRatio: number; }

/** lr for the optimizer step with 0-based index `step`. */
export function learningRate(step: number, c: ScheduleConfig): number {
  if (c.warmupSteps > 0 && step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  if (c.schedule === 'constant') return c.lr;
  const span = Math.max(1, c.steps - c.warmupSteps);
  const progress = Math.min(1, (step - c.warmupSteps) / span);
  const min = c.lr * c.minLrRatio;
  if (c.schedule === 'linear') return c.lr - (c.lr - min) * progress;
  return min + 0.5 * (c.lr - min) * (1 + Math.cos(Math.PI * progress));
}
