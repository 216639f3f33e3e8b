import { runMain } from '@hodei/platform';
import { definition } from './service.js';

await runMain(definition, 'orchestrator');
