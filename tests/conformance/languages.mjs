// The agents package's own `execute_code` tool, once per language it offers
// (`SUPPORTED_LANGUAGES`): a hello that also writes an output file. The tool's
// content must carry the hello and its artifact the file, whose bytes download.

import { createCodeExecutionTool } from '@librechat/agents';

import { downloadCodeOutputBuffer } from './host.mjs';
import { Checks, bearer, config, expect, invokeTool, newUserId, show, toolStdout } from './lib.mjs';

const checks = new Checks('languages');
const user = newUserId();
const jwt = () => bearer(user);

const tool = () =>
  createCodeExecutionTool({
    user_id: user,
    authHeaders: jwt,
    baseUrl: config.baseUrl,
    codeSessionKey: 'execute_code',
    executionProfile: 'default',
  });

// lang -> a program printing "hello <lang>" and writing "file <lang>" to out_<lang>.txt.
const PROGRAMS = {
  py: `open('out_py.txt', 'w').write('file py')\nprint('hello py')`,
  js: `require('fs').writeFileSync('out_js.txt', 'file js'); console.log('hello js');`,
  ts: `import * as fs from 'fs';\nconst s: string = 'file ts';\nfs.writeFileSync('out_ts.txt', s);\nconsole.log('hello ts');`,
  c: `#include <stdio.h>\nint main(void){ FILE *f = fopen("out_c.txt", "w"); fputs("file c", f); fclose(f); puts("hello c"); return 0; }`,
  cpp: `#include <iostream>\n#include <fstream>\nint main(){ std::ofstream("out_cpp.txt") << "file cpp"; std::cout << "hello cpp" << std::endl; }`,
  java: `import java.nio.file.*;\npublic class Hello { public static void main(String[] a) throws Exception { Files.writeString(Path.of("out_java.txt"), "file java"); System.out.println("hello java"); } }`,
  php: `<?php file_put_contents('out_php.txt', 'file php'); echo "hello php\\n";`,
  rs: `fn main() { std::fs::write("out_rs.txt", "file rs").unwrap(); println!("hello rs"); }`,
  go: `package main\nimport ("fmt"; "os")\nfunc main() { os.WriteFile("out_go.txt", []byte("file go"), 0644); fmt.Println("hello go") }`,
  d: `import std.stdio, std.file;\nvoid main() { std.file.write("out_d.txt", "file d"); writeln("hello d"); }`,
  f90: `program h\n  open(10, file='out_f90.txt', status='replace', access='stream')\n  write(10) 'file f90'\n  close(10)\n  print '(a)', 'hello f90'\nend program h`,
  r: `cat('file r', file = 'out_r.txt')\ncat('hello r\\n')`,
  bash: `printf 'file bash' > out_bash.txt; echo hello bash`,
};

async function main() {
  for (const [lang, code] of Object.entries(PROGRAMS)) {
    await checks.run(`execute_code runs ${lang}: stdout and an output file`, async () => {
      const { content, artifact } = await invokeTool(tool(), { lang, code });
      expect(toolStdout(content).trim() === `hello ${lang}`, `content was ${show(content)}`);
      const name = `out_${lang}.txt`;
      const files = artifact.files ?? [];
      expect(files.length === 1 && files[0].name === name, `files[] was ${show(files)}`);
      const bytes = await downloadCodeOutputBuffer({
        baseUrl: config.baseUrl,
        userId: user,
        session_id: files[0].storage_session_id ?? artifact.session_id,
        id: files[0].id,
        authHeaders: jwt(),
      });
      expect(bytes.toString('utf8') === `file ${lang}`, `download gave ${show(bytes.toString('utf8'))}`);
    });
  }
  checks.finish();
}

await main();
