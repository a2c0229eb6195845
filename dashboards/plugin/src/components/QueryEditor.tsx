import * as React from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, InlineSwitch, Input, Select } from '@grafana/ui';

import { DataSource } from '../datasource';
import { FirewatchOptions, FirewatchQuery, QueryType } from '../types';

type Props = QueryEditorProps<DataSource, FirewatchQuery, FirewatchOptions>;

const queryTypes: Array<SelectableValue<QueryType>> = [
  { label: '告警 alarms', value: 'alarms', description: 'alarms raised in the time range' },
  { label: '实时变化 transitions (live)', value: 'transitions', description: 'alarm transitions, streamed' },
  { label: '设备 devices', value: 'devices', description: 'devices with liveness and state' },
  { label: '网格三色 grid summary', value: 'grid', description: 'per grid: open alarms, offline ratio, risk colour' },
  { label: '按级别 open by severity', value: 'open_by_severity', description: 'open alarms counted per severity' },
  { label: '响应时间 response times', value: 'stats', description: 'per station: time to acknowledge and to arrive' },
];

const severities: Array<SelectableValue<string>> = ['all', 'fire', 'alarm', 'warning', 'fault', 'offline'].map((v) => ({
  label: v,
  value: v,
}));
const states: Array<SelectableValue<string>> = ['open', 'closed', 'all', 'raised', 'acknowledged', 'dispatched', 'arrived'].map(
  (v) => ({ label: v, value: v })
);
const levels: Array<SelectableValue<string>> = [
  { label: '村社区 village', value: 'village' },
  { label: '乡镇街道 town', value: 'town' },
  { label: '区县 county', value: 'county' },
];

/** QueryEditor picks the query type and its filters; template variables work in every text field. */
export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const type = query.queryType || 'alarms';
  const set = (patch: Partial<FirewatchQuery>) => {
    onChange({ ...query, ...patch });
    onRunQuery();
  };
  const text = (key: 'grid' | 'device', placeholder: string) => (
    <Input
      width={24}
      value={query[key] || ''}
      placeholder={placeholder}
      onChange={(e: React.ChangeEvent<HTMLInputElement>) => onChange({ ...query, [key]: e.currentTarget.value })}
      onBlur={onRunQuery}
    />
  );
  return (
    <div>
      <InlineFieldRow>
        <InlineField label="Query" labelWidth={12}>
          <Select width={32} options={queryTypes} value={type} onChange={(v) => set({ queryType: v.value })} />
        </InlineField>
        <InlineField label="Grid" labelWidth={8} tooltip="administrative code prefix: 6 county, 9 town, 12 village digits">
          {text('grid', '450204')}
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        {(type === 'alarms' || type === 'stats' || type === 'transitions') && (
          <InlineField label="Severity" labelWidth={12}>
            <Select
              width={16}
              options={severities}
              value={query.severity || 'all'}
              allowCustomValue
              onChange={(v) => set({ severity: v.value })}
            />
          </InlineField>
        )}
        {type === 'alarms' && (
          <InlineField label="State" labelWidth={8}>
            <Select width={16} options={states} value={query.state || 'open'} allowCustomValue onChange={(v) => set({ state: v.value })} />
          </InlineField>
        )}
        {(type === 'alarms' || type === 'devices') && (
          <InlineField label="Device" labelWidth={8}>
            {text('device', 'device id')}
          </InlineField>
        )}
        {type === 'devices' && (
          <InlineField label="Offline only" labelWidth={14}>
            <InlineSwitch value={Boolean(query.offline)} onChange={(e) => set({ offline: e.currentTarget.checked })} />
          </InlineField>
        )}
        {type === 'grid' && (
          <InlineField label="Level" labelWidth={12}>
            <Select width={20} options={levels} value={query.level || 'village'} onChange={(v) => set({ level: v.value })} />
          </InlineField>
        )}
      </InlineFieldRow>
    </div>
  );
}
