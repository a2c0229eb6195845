import * as React from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, SecretInput } from '@grafana/ui';

import { FirewatchOptions, FirewatchSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<FirewatchOptions, FirewatchSecureOptions>;

/** ConfigEditor edits the firewatch URL, the API token and the stream's polling period. */
export function ConfigEditor(props: Props) {
  const { onOptionsChange, options } = props;
  const { jsonData, secureJsonFields } = options;
  const secureJsonData = (options.secureJsonData || {}) as FirewatchSecureOptions;

  const setJson = (patch: Partial<FirewatchOptions>) =>
    onOptionsChange({ ...options, jsonData: { ...jsonData, ...patch } });

  return (
    <div className="gf-form-group">
      <InlineField label="firewatch URL" labelWidth={20} tooltip="firewatch HTTP API, e.g. http://127.0.0.1:9090">
        <Input
          width={40}
          value={jsonData.url || ''}
          placeholder="http://127.0.0.1:9090"
          onChange={(e: React.ChangeEvent<HTMLInputElement>) => setJson({ url: e.currentTarget.value })}
        />
      </InlineField>
      <InlineField label="API token" labelWidth={20} tooltip="a token of role viewer (http.tokens); empty if firewatch has none">
        <SecretInput
          width={40}
          isConfigured={Boolean(secureJsonFields && secureJsonFields.token)}
          value={secureJsonData.token || ''}
          placeholder="viewer token"
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...options.secureJsonFields, token: false },
              secureJsonData: { ...secureJsonData, token: '' },
            })
          }
          onChange={(e: React.ChangeEvent<HTMLInputElement>) =>
            onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, token: e.currentTarget.value } })
          }
        />
      </InlineField>
      <InlineField label="Stream poll (s)" labelWidth={20} tooltip="how often the alarm stream polls firewatch (default 2)">
        <Input
          width={10}
          type="number"
          value={jsonData.pollSeconds || ''}
          placeholder="2"
          onChange={(e: React.ChangeEvent<HTMLInputElement>) =>
            setJson({ pollSeconds: parseInt(e.currentTarget.value, 10) || undefined })
          }
        />
      </InlineField>
    </div>
  );
}
