/** sluice RabbitMQ channels ↔ pypz-rmq-io 0.10.2 (py-amqp 5.2.0) on the real RabbitMQ 3.10.8 broker. */
import { pino } from 'pino';
import { RMQChannelReader, RMQChannelWriter } from '../../src/channels/index.ts';
import { runPypzInterop } from './pypz-interop.ts';
import { rabbitMqUrl } from './rabbitmq-env.ts';

const logger = pino({ level: 'silent' });

runPypzInterop('rabbitmq', {
  broker: 'rmq',
  peerLocation: ['--url', process.env.SLUICE_RABBITMQ_URL ?? ''],
  reader: (o) => new RMQChannelReader({ ...o, url: rabbitMqUrl(), logger }),
  writer: (o) => new RMQChannelWriter({ ...o, url: rabbitMqUrl(), logger }),
});
