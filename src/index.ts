export * from './errors.ts';
export * from './transport/index.ts';
