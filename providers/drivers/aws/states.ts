// EC2 instance states (and what the VM's boot agent reported) onto the
// default pack's diagram: the one table of the aws driver (docs/drivers/aws.md
// repeats it for people).
//
// | EC2 state      | agent report            | status     | power | observedState |
// | -------------- | ----------------------- | ---------- | ----- | ------------- |
// | pending        | any                     | present    | on    | Starting      |
// | running        | booting / none this run | present    | on    | Starting      |
// | running        | ready                   | present    | on    | Running       |
// | running        | failed                  | present    | on    | BootFailed    |
// | running        | unknown (client restart,| present    | on    | Running (agent |
// |                | or a report of a run    |            |       | unknown)      |
// |                | before: isCurrentReport)|            |       |               |
// | stopping       | any                     | present    | on    | ShuttingDown  |
// | stopped        | any                     | present    | off   | PoweredOff    |
// | shutting-down  | any                     | terminated | off   | Deleted       |
// | terminated     | any                     | terminated | off   | Deleted       |
//
// EC2 has no powered-on-but-not-booted state: PoweredOn is never observed
// (powerOn checks the instance is stopped and can start; boot starts it).
// shutting-down is EC2's terminating, which cannot be undone: Deleted.
// A running instance of whose agent this client holds no report counts as
// Running (a fleet VM got there through an approved boot: refresh), but says
// agent `unknown`, not `ready`: nothing here saw its handshake complete, and
// `fleet import` records it Running only when the record confirms that boot
// (engine/cli/commands/import.ts, importedState).
import type { ObservedAgent, PowerState } from '../../../protocol/index.ts';

export const EC2_STATES = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'] as const;
export type Ec2State = (typeof EC2_STATES)[number];

export function isEc2State(s: string | undefined): s is Ec2State {
  return (EC2_STATES as readonly (string | undefined)[]).includes(s);
}

/** What the driver knows of the agent of an instance's current run: nothing (`unknown`, e.g. after a restart), or its last report. */
export type AgentKnowledge = 'unknown' | 'none' | 'booting' | 'ready' | 'failed';

export interface MappedState {
  status: 'present' | 'terminated';
  power: PowerState;
  agent: ObservedAgent;
  observedState: string;
}

export function mapEc2State(state: Ec2State, agent: AgentKnowledge): MappedState {
  switch (state) {
    case 'pending':
      return { status: 'present', power: 'on', agent: 'booting', observedState: 'Starting' };
    case 'running':
      if (agent === 'ready' || agent === 'unknown') return { status: 'present', power: 'on', agent, observedState: 'Running' };
      if (agent === 'failed') return { status: 'present', power: 'on', agent: 'failed', observedState: 'BootFailed' };
      return { status: 'present', power: 'on', agent: 'booting', observedState: 'Starting' };
    case 'stopping':
      return { status: 'present', power: 'on', agent: 'stopping', observedState: 'ShuttingDown' };
    case 'stopped':
      return { status: 'present', power: 'off', agent: 'none', observedState: 'PoweredOff' };
    case 'shutting-down':
    case 'terminated':
      return { status: 'terminated', power: 'off', agent: 'none', observedState: 'Deleted' };
  }
}
