/** `diskpipe help COMMAND [SUB]` shows that command's help, as `COMMAND [SUB] --help` does. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskpipe } from '../helpers/peers.js';

test('help COMMAND: the command’s own help, exit 0', () => {
  for (const words of [['convert'], ['cache', 'ls'], ['disk', 'create'], ['serve']]) {
    const viaHelp = diskpipe(['help', ...words]);
    const viaFlag = diskpipe([...words, '--help']);
    assert.equal(viaHelp.status, 0, words.join(' '));
    assert.equal(viaHelp.stdout, viaFlag.stdout, words.join(' '));
    assert.match(viaHelp.stdout, new RegExp(`^usage: diskpipe ${words.join(' ')}`));
  }
  const unknown = diskpipe(['help', 'nosuch']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command 'nosuch'/);
  assert.equal(diskpipe(['help']).status, 0);
});
