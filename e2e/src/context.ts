// What global setup hands to every test file.
import { inject } from 'vitest';

export interface ProvidedInfra {
  mode: 'testcontainers' | 'local';
  databaseUrl: string;
  natsUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    infra: ProvidedInfra;
  }
}

export const infra = (): ProvidedInfra => inject('infra');
