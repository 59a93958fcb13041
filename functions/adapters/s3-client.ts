/**
 * The two pieces of the S3 client that reading command output from S3 uses (ssm-relay.ts), in a
 * module of their own so that they are imported when the first output is read, not at start-up.
 * A dynamic import of `@aws-sdk/client-s3` itself would keep every one of its exports in the
 * bundle; through this module, only these two and what they need.
 */
export { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
