import type { BuildResult } from 'esbuild';

export declare const ROOT: string;
export declare function bundleHandler(outfile: string): Promise<BuildResult>;
export declare function bundleCli(outfile: string): Promise<BuildResult>;
