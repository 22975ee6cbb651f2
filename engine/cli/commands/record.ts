import type { Command } from 'commander';
import { modeOf, runCommand } from '../io.ts';
import { formatOption, recordUrlOption, stackOption } from '../options.ts';
import { loadStackFile, printResult, type RecordCliOptions } from './state.ts';
import type { RegisterCommand } from './types.ts';

/**
 * `fleet record upgrade`: brings the record's schema to this dmzfleet's
 * version, on purpose. The commands that write nothing (`fleet plan` on a
 * PostgreSQL record, state, history, ui, `refresh --check`) never upgrade a
 * record, since an older dmzfleet then refuses it (record.newer-schema):
 * a pull request trying a newer dmzfleet must not move the record past the
 * version main's jobs use. `fleet apply` upgrades too. docs/record.md,
 * "Migrations".
 */
export const registerRecord: RegisterCommand = (program: Command, io, setExit) => {
  const record = program.command('record').description('Work with the record itself: upgrade its schema to this dmzfleet\'s version.');
  record
    .command('upgrade')
    .description('Upgrade the record\'s schema to this dmzfleet\'s version (in one transaction). Older dmzfleet versions refuse the record afterwards: run it once every job that uses the record can move to this version.')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (opts: RecordCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(io, async () => {
          const [stack, { upgradeRecord }] = await Promise.all([loadStackFile(io, opts), import('../../record/index.ts')]);
          const { record: opened, from, to } = await upgradeRecord(stack.recordUrl);
          const description = opened.description;
          await opened.close();
          const upgraded = to > from;
          printResult(io, mode, { record: description, from, to, upgraded }, () =>
            upgraded
              ? `Upgraded the record ${description} from schema version ${from} to ${to}. dmzfleet versions that know only version ${from} now refuse it (record.newer-schema): move every job that uses it to this dmzfleet.\n`
              : `The record ${description} is at schema version ${to}, this dmzfleet's: nothing to upgrade.\n`,
          );
          return 0;
        }, mode),
      );
    });
};
