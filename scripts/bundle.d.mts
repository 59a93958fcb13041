import type { BuildOptions, BuildResult } from 'esbuild';

export declare const ROOT: string;
export declare function bundleHandler(outfile: string, extra?: BuildOptions): Promise<BuildResult>;
export declare function bundleCli(outfile: string, extra?: BuildOptions): Promise<BuildResult>;
